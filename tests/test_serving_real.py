"""End to end against a real TensorFlow Serving: skipped where none runs.

Either `tensorflow_model_server` is on PATH (the tests start it on free ports, serving a fresh export),
or TF_SERVING_URL (and TF_SERVING_GRPC, TF_SERVING_EXPORT_DIR) point at a running server.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import fake_serving
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from keras_vae import publish, serving
from keras_vae.images import image_grid
from keras_vae.serving import sample as sampling
from keras_vae.serving.signatures import MODELS


def _wait_until_available(client, version, timeout=120.0):
    """Waits until `version` of both models is AVAILABLE."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = [{s["version"]: s["state"] for s in client.status(m)["model_version_status"]}
                      for m in MODELS]
            if all(s.get(str(version)) == "AVAILABLE" for s in states):
                return
        except serving.ServingError:
            pass  # not up yet
        assert time.monotonic() < deadline, f"version {version} did not become AVAILABLE"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def real_server(tiny_vae, tmp_path_factory):
    """(REST URL, gRPC target, export root the server watches, or None when unknown)."""
    if os.environ.get("TF_SERVING_URL"):
        root = os.environ.get("TF_SERVING_EXPORT_DIR")
        yield os.environ["TF_SERVING_URL"], os.environ.get("TF_SERVING_GRPC"), root and Path(root)
        return
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        pytest.skip("needs TensorFlow Serving: tensorflow_model_server is not on PATH and TF_SERVING_URL "
                    "(e.g. http://127.0.0.1:8501, with TF_SERVING_GRPC=127.0.0.1:8500) is not set")
    root = tmp_path_factory.mktemp("served")
    publish(root, tiny_vae)
    config = root / "models.config"
    config.write_text((REPO / "serving/models.config").read_text().replace('"/models/', f'"{root}/'))
    rest, grpc_port = fake_serving.free_port(), fake_serving.free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [binary, f"--port={grpc_port}", f"--rest_api_port={rest}", f"--model_config_file={config}",
         "--file_system_poll_wait_seconds=1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_available(serving.RestClient(f"http://127.0.0.1:{rest}"), 1)
        yield f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}", root
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_real_server_answers_good_and_bad_requests(real_server):
    url, grpc_target, root = real_server
    client = serving.RestClient(url)
    images = client.predict("decoder", {"n": 3, "seed": 5}, signature_name="sample")
    assert images.shape[0] == 3 and ((images >= 0) & (images <= 1)).all()
    png = client.predict("decoder", {"n": 3, "seed": 5}, signature_name="sample_png")  # {"b64": ...}
    np.testing.assert_allclose(tf.io.decode_png(png).numpy() / 255.0, image_grid(images),
                               atol=0.5 / 255 + 1e-6)
    if root is not None:
        local, *_ = sampling.sample_local(root / "decoder", 3, 5)
        assert png == local
    encoded = client.predict("vae", {"images": images}, row_format=True)
    latent_dim = encoded["mean"].shape[1]
    assert encoded["log_var"].shape == (3, latent_dim)
    decoded = client.predict("decoder", {"z": encoded["mean"]}, row_format=True)
    assert decoded.shape == images.shape
    # The vae's composites, and a composition pinned to one version, answer alike.
    pair = {"images_a": images[:1], "images_b": images[1:2], "steps": 3}
    between = client.predict("vae", pair, "interpolate")
    assert between.shape == (1, 3, *images.shape[1:])

    def midpoint(session):
        mean = session.predict({"images": images[:2]}, "encode")["mean"]
        return session.predict({"z": (mean[:1] + mean[1:]) / 2}, "decode")

    np.testing.assert_allclose(client.consistent("vae", midpoint), between[:, 1], atol=1e-5)
    for model, inputs, message in (
        ("decoder", {"z": np.zeros((1, latent_dim + 1))}, f"z must have shape [batch, {latent_dim}]"),
        ("decoder", {"z": np.full((1, latent_dim), np.nan)}, "z must not contain NaN"),
        ("vae", {"images": images * 2 + 0.5}, "images must lie in [0, 1]"),
        ("vae", {"images": images[:, :-1]}, "images must have shape"),
    ):
        with pytest.raises(serving.ServingError) as refused:
            client.predict(model, inputs)
        assert refused.value.status == 400 and message in refused.value.detail
        assert "[[" not in refused.value.detail
    with pytest.raises(serving.ServingError) as not_served:
        client.predict("decoder", {"n": 1, "seed": 1}, "sample", version=10**6)
    assert not_served.value.status == 404
    if grpc_target is None:
        return
    with serving.GrpcClient(grpc_target) as grpc_client:
        # Plain Python numbers and float64 arrays: the client casts them to int32, int64 and float32.
        sampled = grpc_client.predict("decoder", {"n": 3, "seed": 5}, "sample")
        np.testing.assert_allclose(sampled["images"], images, atol=1e-6)
        assert grpc_client.predict("decoder", {"n": 3, "seed": 5}, "sample_png")["png_bytes"] == png
        again = grpc_client.predict("decoder", {"z": encoded["mean"].astype(np.float64)})["images"]
        np.testing.assert_allclose(again, decoded, atol=1e-5)
        many = grpc_client.predict("decoder", {"n": 2000, "seed": 1}, "sample")["images"]
        assert many.shape[0] == 2000
        pinned = grpc_client.consistent("vae", lambda session: session.predict(pair, "interpolate")["images"])
        np.testing.assert_allclose(pinned, between, atol=1e-5)  # from typed fields, as the server answers
        with pytest.raises(serving.ServingError, match="must not contain NaN") as refused:
            grpc_client.predict("decoder", {"z": np.full((1, latent_dim), np.inf)})
        assert refused.value.status == "INVALID_ARGUMENT" and "[[" not in refused.value.detail


def test_real_server_rolls_to_a_newly_published_version(real_server, tiny_vae):
    url, _, root = real_server
    if root is None:
        pytest.skip("TF_SERVING_URL is set without TF_SERVING_EXPORT_DIR, the export root it serves")
    version = publish(root, tiny_vae)
    client = serving.RestClient(url)
    _wait_until_available(client, version)
    images = client.predict("decoder", {"n": 2, "seed": 1}, signature_name="sample", version=version)
    assert images.shape[0] == 2
