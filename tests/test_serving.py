"""The TensorFlow Serving clients, sample.py --server and the serving configuration.

Fake servers listen on 127.0.0.1 only; the REST fake answers a bounded number of requests and stops by
itself. The end-to-end test needs a real server and is skipped without one.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import grpc
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from conftest import REPO
from keras_vae import cli, export, generate, serving
from keras_vae.config import SampleConfig


@contextlib.contextmanager
def fake_rest_server(respond, max_requests=8, lifetime=60.0):
    """An HTTP server on 127.0.0.1 answering with `respond(method, path, body) -> (status, text)`.

    Yields (base URL, list of (method, path, headers, decoded JSON body) received). It stops after
    `max_requests` requests, `lifetime` seconds, or when the block ends, whichever comes first.
    """
    received, stop = [], threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            received.append((self.command, self.path, dict(self.headers), body))
            status, text = respond(self.command, self.path, body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.1
    deadline = time.monotonic() + lifetime

    def serve():
        while not stop.is_set() and len(received) < max_requests and time.monotonic() < deadline:
            server.handle_request()
        server.server_close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        stop.set()
        thread.join(timeout=5)


def _json(payload):
    return json.dumps(payload)


def _run_signature(root, model, signature, inputs):
    """Runs a signature of version 1 of `model` in `root` as TensorFlow Serving would; numpy outputs.

    Raises:
        tf.errors.InvalidArgumentError: if the model rejects the inputs.
    """
    function = tf.saved_model.load(str(root / model / "1")).signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {key: tf.constant(value, specs[key].dtype) for key, value in inputs.items()}
    return {key: value.numpy() for key, value in function(**tensors).items()}


def test_rest_request_bodies_follow_the_api(tmp_path):
    with fake_rest_server(lambda *_: (200, _json({"outputs": [[0.5]]}))) as (url, received):
        client = serving.RestClient(url + "/")
        client.predict("decoder", {"n": 3, "seed": 7}, signature_name="sample")
        client.predict("encoder", {"images": np.zeros((2, 1, 1, 1), np.float32)}, version=4)
        client.predict("decoder", {"z": np.array([[1.5, -2.0], [0.25, np.nan]], np.float32)},
                       signature_name="logits", row_format=True)
    (method, path, headers, body), second, third = received
    assert method == "POST" and path == "/v1/models/decoder:predict"
    assert headers["Content-Type"] == "application/json"
    assert body == {"signature_name": "sample", "inputs": {"n": 3, "seed": 7}}
    assert second[1] == "/v1/models/encoder/versions/4:predict"
    assert second[3] == {"signature_name": "serving_default", "inputs": {"images": [[[[0.0]]], [[[0.0]]]]}}
    assert third[3]["signature_name"] == "logits"
    assert third[3]["instances"][0] == {"z": [1.5, -2.0]}
    # TF Serving's JSON parser takes NaN, which is why the exported functions check for it.
    assert third[3]["instances"][1]["z"][0] == 0.25 and np.isnan(third[3]["instances"][1]["z"][1])
    with pytest.raises(ValueError, match="one batch size"):
        serving.request_body({"n": 3, "seed": 7}, row_format=True)


def test_rest_responses_in_both_formats_are_parsed():
    # The shapes of the examples in TF Serving's REST API documentation.
    rows = serving.parse_response({"predictions": [{"mean": [1, 2], "log_var": [3, 4]},
                                                   {"mean": [5, 6], "log_var": [7, 8]}]})
    np.testing.assert_array_equal(rows["mean"], [[1, 2], [5, 6]])
    np.testing.assert_array_equal(rows["log_var"], [[3, 4], [7, 8]])
    np.testing.assert_array_equal(serving.parse_response({"predictions": [[0.5, 1.0], [0.0, 0.25]]}),
                                  [[0.5, 1.0], [0.0, 0.25]])
    columns = serving.parse_response({"outputs": {"mean": [[1, 2]], "log_var": [[3, 4]]}})
    assert columns["mean"].shape == (1, 2) and columns["log_var"].tolist() == [[3, 4]]
    assert serving.parse_response({"outputs": [[[0.5]]]}).shape == (1, 1, 1)
    with pytest.raises(serving.ServingError, match="Not a TensorFlow Serving predict response"):
        serving.parse_response({"result": 1})


def test_rest_errors_become_serving_errors():
    message = "assertion failed: [z must have shape [batch, 4]; got shape] [2 5]"
    answers = iter([(400, _json({"error": message})), (404, "Not Found\n"), (200, "<html>")])
    with fake_rest_server(lambda *_: next(answers)) as (url, _):
        client = serving.RestClient(url)
        with pytest.raises(serving.ServingError) as refused:
            client.predict("decoder", {"z": [[0.0] * 5] * 2})
        with pytest.raises(serving.ServingError, match="answered 404 .*: Not Found") as missing:
            client.status("nonexistent")
        with pytest.raises(serving.ServingError, match="other than JSON"):
            client.status("decoder")
    assert refused.value.status == 400 and refused.value.detail == message
    predict_url = f"{url}/v1/models/decoder:predict"
    assert str(refused.value) == f"TensorFlow Serving answered 400 to {predict_url}: {message}"
    assert missing.value.status == 404
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(serving.ServingError, match="Cannot reach TensorFlow Serving") as unreachable:
        serving.RestClient(f"http://127.0.0.1:{closed}", timeout=5).predict("decoder", {"n": 1})
    assert unreachable.value.status is None


def test_sample_from_a_server_writes_the_same_grid_as_from_the_saved_model(published, tmp_path):
    def respond(method, path, body):
        model, version = re.fullmatch(r"/v1/models/(\w+)(?:/versions/(\d+))?:predict", path).groups()
        assert version in (None, "1")
        try:
            outputs = _run_signature(published, model, body["signature_name"], body["inputs"])
        except tf.errors.InvalidArgumentError as error:
            return 400, _json({"error": error.message})
        # A lone output comes without its name, as TF Serving sends it.
        return 200, _json({"outputs": next(iter(outputs.values())).tolist()})

    local = SampleConfig(model_dir=str(published / "decoder"), n=10, seed=3, out=str(tmp_path / "local.png"))
    generate.sample(local)
    with fake_rest_server(respond) as (url, received):
        served = SampleConfig(server=url, version=1, n=10, seed=3, out=str(tmp_path / "served.png"))
        generate.sample(served)
        status = cli.main(SampleConfig, "keras_vae.generate.sample", ["--server", url, "--n", "20000"])
    assert received[0][1] == "/v1/models/decoder/versions/1:predict"
    assert received[0][3] == {"signature_name": "sample", "inputs": {"n": 10, "seed": 3}}
    grid = matplotlib.image.imread(tmp_path / "served.png")
    assert grid.shape[:2] == (3 * 30 + 2, 4 * 30 + 2)
    np.testing.assert_array_equal(grid, matplotlib.image.imread(tmp_path / "local.png"))
    assert status == 2  # the server refused n = 20000: a clear message, no traceback


def test_sample_option_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        SampleConfig.from_args(["--server", "localhost:8501"])
    assert "--server must be a URL such as http://localhost:8501" in capsys.readouterr().err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    status = cli.main(SampleConfig, "keras_vae.generate.sample",
                      ["--server", f"http://127.0.0.1:{closed}", "--out", str(tmp_path / "x.png")])
    assert status == 2 and "Cannot reach TensorFlow Serving" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


class FakePredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict from the SavedModels in an export root, as TF Serving would."""

    def __init__(self, root):
        self.root, self.requests = root, []

    def Predict(self, request, context):  # noqa: N802 (the gRPC method name)
        self.requests.append(request)
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            outputs = _run_signature(self.root, request.model_spec.name,
                                     request.model_spec.signature_name, inputs)
        except tf.errors.InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        response = predict_pb2.PredictResponse()
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def test_grpc_client_against_a_prediction_service(published):
    service = FakePredictionService(published)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with serving.GrpcClient(f"127.0.0.1:{port}", timeout=30) as client:
            sampled = client.predict("decoder", {"n": np.int32(2), "seed": np.int64(9)}, "sample", version=1)
            encoded = client.predict("encoder", {"images": sampled["images"]})
            refusal = r"INVALID_ARGUMENT: (?s:.*)z must not contain NaN"
            with pytest.raises(serving.ServingError, match=refusal) as bad:
                client.predict("decoder", {"z": np.full((1, 4), np.nan, np.float32)})
    finally:
        server.stop(grace=None)
    first = service.requests[0]
    assert (first.model_spec.name, first.model_spec.signature_name, first.model_spec.version.value) == (
        "decoder", "sample", 1)
    assert first.inputs["n"].dtype == tf.int32.as_datatype_enum
    assert first.inputs["seed"].dtype == tf.int64.as_datatype_enum
    assert not service.requests[1].model_spec.HasField("version")
    expected = _run_signature(published, "decoder", "sample", {"n": 2, "seed": 9})["images"]
    np.testing.assert_array_equal(sampled["images"], expected)
    assert set(encoded) == {"mean", "log_var"} and encoded["mean"].shape == (2, 4)
    assert bad.value.status == "INVALID_ARGUMENT"


def test_serving_configuration_serves_both_models_from_saved_models():
    config = text_format.Parse((REPO / "serving/models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    models = {m.name: (m.base_path, m.model_platform) for m in config.model_config_list.config}
    assert models == {name: (f"/models/{name}", "tensorflow") for name in export.MODELS}
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    (service,) = yaml.safe_load((REPO / "serving/docker-compose.yml").read_text())["services"].values()
    assert service["image"].startswith("tensorflow/serving:")
    assert sorted(service["ports"]) == ["8500:8500", "8501:8501"]
    mounts = {container: host for host, container, *_ in (v.split(":") for v in service["volumes"])}
    assert mounts["/models"] == "../saved_models"
    (config_path,) = [arg.split("=", 1)[1] for arg in service["command"] if "--model_config_file=" in arg]
    assert mounts[config_path] == "./models.config"


# --- Against a real TensorFlow Serving -------------------------------------------------------------


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_available(client, version, timeout=120.0):
    """Waits until `version` of both models is AVAILABLE."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = [{s["version"]: s["state"] for s in client.status(m)["model_version_status"]}
                      for m in export.MODELS]
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
    export.publish(root, tiny_vae)
    config = root / "models.config"
    config.write_text((REPO / "serving/models.config").read_text().replace('"/models/', f'"{root}/'))
    rest, grpc_port = _free_port(), _free_port()
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
    if root is not None:
        local, _ = generate.sample_local(root / "decoder", 3, 5)
        np.testing.assert_allclose(images, local, atol=1e-5)
    encoded = client.predict("encoder", {"images": images}, row_format=True)
    latent_dim = encoded["mean"].shape[1]
    assert encoded["log_var"].shape == (3, latent_dim)
    decoded = client.predict("decoder", {"z": encoded["mean"]}, row_format=True)
    assert decoded.shape == images.shape
    for model, inputs, message in (
        ("decoder", {"z": np.zeros((1, latent_dim + 1))}, f"z must have shape [batch, {latent_dim}]"),
        ("decoder", {"z": np.full((1, latent_dim), np.nan)}, "z must not contain NaN"),
        ("encoder", {"images": images * 2 + 0.5}, "images must lie in [0, 1]"),
        ("encoder", {"images": images[:, :-1]}, "images must have shape"),
    ):
        with pytest.raises(serving.ServingError) as refused:
            client.predict(model, inputs)
        assert refused.value.status == 400 and message in refused.value.detail
    if grpc_target is None:
        return
    with serving.GrpcClient(grpc_target) as grpc_client:
        sampled = grpc_client.predict("decoder", {"n": np.int32(3), "seed": np.int64(5)}, "sample")
        np.testing.assert_allclose(sampled["images"], images, atol=1e-6)
        with pytest.raises(serving.ServingError, match="must not contain NaN") as refused:
            grpc_client.predict("decoder", {"z": np.full((1, latent_dim), np.inf, np.float32)})
        assert refused.value.status == "INVALID_ARGUMENT"


def test_real_server_rolls_to_a_newly_published_version(real_server, tiny_vae):
    url, _, root = real_server
    if root is None:
        pytest.skip("TF_SERVING_URL is set without TF_SERVING_EXPORT_DIR, the export root it serves")
    version = export.publish(root, tiny_vae)
    client = serving.RestClient(url)
    _wait_until_available(client, version)
    images = client.predict("decoder", {"n": 2, "seed": 1}, signature_name="sample", version=version)
    assert images.shape[0] == 2
