"""The TensorFlow Serving clients, sample.py --server and the serving configuration.

The clients run against loopback fakes that follow TensorFlow Serving's source (fake_serving.py for the
model server and gRPC, fake_rest.py for REST), on 127.0.0.1 only. The end-to-end tests need a real server
and are skipped without one.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import PurePosixPath

import fake_json_answers
import fake_rest
import fake_servable
import fake_serving
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from conftest import REPO
from keras_vae import cli, publish, serving
from keras_vae.config import SampleConfig
from keras_vae.serving import clients
from keras_vae.serving import sample as sampling
from keras_vae.serving.signatures import MODELS


@pytest.fixture(scope="module")
def core(published):
    server = fake_serving.ModelServer(published)
    yield server
    server.close()


@pytest.fixture(scope="module")
def rest(core):
    """(base URL, list of the requests received) of a strict REST fake serving `published`."""
    with fake_rest.rest_server(core) as served:
        yield served


@pytest.fixture(scope="module")
def grpc_target(core):
    """(target, the PredictionService, which records requests) of a strict gRPC fake."""
    with fake_serving.grpc_server(core) as served:
        yield served


def _run_signature(root, model, signature, inputs):
    """Runs a signature of version 1 of `model` in `root` in this process; numpy outputs."""
    function = tf.saved_model.load(str(root / model / "1")).signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {key: tf.constant(value, specs[key].dtype) for key, value in inputs.items()}
    return {key: value.numpy() for key, value in function(**tensors).items()}


def _refused(call, *args, **kwargs):
    """The ServingError `call` raises."""
    with pytest.raises(serving.ServingError) as refused:
        call(*args, **kwargs)
    return refused.value


def test_rest_answers_both_formats_with_every_output(published, rest):
    url, received = rest
    client, first = serving.RestClient(url + "/"), len(received)
    z = np.random.default_rng(0).standard_normal((3, 4))  # float64: the server types JSON numbers itself
    expected = _run_signature(published, "decoder", "serving_default", {"z": z})["images"]
    for row_format in (False, True):
        images = client.predict("decoder", {"z": z}, row_format=row_format)
        np.testing.assert_allclose(images, expected, atol=1e-6)
        codes = client.predict("vae", {"images": images}, version=1, row_format=row_format)
        wanted = _run_signature(published, "vae", "serving_default", {"images": images})
        assert set(codes) == {"mean", "log_var"}
        for name, value in wanted.items():
            np.testing.assert_allclose(codes[name], value, atol=1e-5)
    bodies = [(path, body) for _, path, body in received[first:]]
    assert [path for path, _ in bodies] == [
        "/v1/models/decoder:predict", "/v1/models/vae/versions/1:predict"] * 2
    assert bodies[0][1] == {"signature_name": "serving_default", "inputs": {"z": z.tolist()}}
    assert bodies[2][1]["instances"] == [{"z": row} for row in z.tolist()]
    with pytest.raises(ValueError, match="one batch size"):
        clients.request_body({"n": 3, "seed": 7}, row_format=True)


def test_rest_decodes_base64_bytes_in_both_formats(published, rest):
    png = serving.RestClient(rest[0]).predict("decoder", {"n": 10, "seed": 3}, signature_name="sample_png")
    assert png == _run_signature(published, "decoder", "sample_png", {"n": 10, "seed": 3})["png_bytes"]
    # What the fake writes, following json_tensor.cc, for outputs no signature here has: a rank-1 bytes
    # output in rows ({"b64": ...} per example), and bytes beside another output in both formats.
    strings = fake_servable.as_proto_field(np.array([b"\x89PNG\x00", b"\x00"], object),
                                           tf.string.as_datatype_enum)
    numbers = fake_servable.as_proto_field(np.array([1.5, 2.5], np.float32), tf.float32.as_datatype_enum)
    rows = json.loads(fake_json_answers.predict_json({"png_bytes": strings}, row_format=True))
    assert rows == {"predictions": [{"b64": "iVBORwA="}, {"b64": "AA=="}]}
    assert clients.parse_response(rows).tolist() == [b"\x89PNG\x00", b"\x00"]
    for row_format in (True, False):
        both = fake_json_answers.predict_json({"png_bytes": strings, "score": numbers}, row_format)
        parsed = clients.parse_response(json.loads(both))
        assert parsed["png_bytes"].tolist() == [b"\x89PNG\x00", b"\x00"]
        assert parsed["score"].tolist() == [1.5, 2.5]
    assert clients.parse_response({"outputs": {"b64": "AA=="}}) == b"\x00"
    # A scalar output has no row format (docs/serving.md says so).
    scalar = fake_servable.as_proto_field(np.array(b"x", object), tf.string.as_datatype_enum)
    with pytest.raises(fake_serving.Status, match="Tensor name: png_bytes has no shape information"):
        fake_json_answers.predict_json({"png_bytes": scalar}, row_format=True)


def test_rest_errors_are_the_servers_json_with_its_status_codes(rest):
    url = rest[0]
    client = serving.RestClient(url)
    latent = {"z": [[0.0] * 4]}
    not_found = "Servable not found for request: "
    for (model, version, signature, inputs), (status, message) in [
        (("nonexistent", None, "serving_default", latent), (404, not_found + "Latest(nonexistent)")),
        (("decoder", 2, "serving_default", latent), (404, not_found + "Specific(decoder, 2)")),
        (("decoder", None, "nope", latent), (
            400, 'Serving signature name: "nope" not found in signature def')),
        (("decoder", None, "sample", {"n": 2.5, "seed": 1}), (
            400, "JSON Value: 2.5 Type: Number is not of expected type: int32")),
        (("decoder", None, "sample", {"n": [2, 3], "seed": 1}), (
            400, "assertion failed: [n must have shape []; got shape] [2]")),
        (("decoder", None, "serving_default", {"z": [[float("nan")] * 4]}), (
            400, "z must not contain NaN or infinite values : Tensor had NaN values")),
    ]:
        error = _refused(client.predict, model, inputs, signature, version)
        assert (error.status, error.detail) == (status, message)
        predict_url = client.model_url(model, version) + ":predict"
        assert str(error) == f"TensorFlow Serving answered {status} to {predict_url}: {message}"
    missing = _refused(client.status, "nonexistent")
    assert (missing.status, missing.detail) == (404, "Could not find any versions of model nonexistent")
    assert client.status("decoder")["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = client._call(client.model_url("decoder") + "/metadata")
    assert metadata["model_spec"]["version"] == "1"
    signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert signature_defs["sample_png"]["outputs"]["png_bytes"]["dtype"] == "DT_STRING"


def test_rest_client_reports_answers_that_are_not_json_and_servers_it_cannot_reach():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server method name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a proxy's page</html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    with pytest.raises(serving.ServingError, match="other than JSON"):
        serving.RestClient(f"http://127.0.0.1:{server.server_port}", timeout=5).status("decoder")
    thread.join(timeout=5)
    server.server_close()
    nobody = f"http://127.0.0.1:{fake_serving.free_port()}"
    unreachable = _refused(serving.RestClient(nobody, timeout=5).predict, "decoder", {"n": 1})
    assert "Cannot reach TensorFlow Serving" in str(unreachable) and unreachable.status is None


def test_sample_from_a_server_writes_the_same_png_as_from_the_saved_model(published, rest, tmp_path, capsys):
    url, received = rest
    local = SampleConfig(model_dir=str(published / "decoder"), n=10, seed=3, out=str(tmp_path / "local.png"))
    sampling.sample(local)
    first = len(received)
    sampling.sample(SampleConfig(server=url, version=1, n=10, seed=3, out=str(tmp_path / "served.png")))
    assert received[-1][1:] == ("/v1/models/decoder/versions/1:predict",
                                {"signature_name": "sample_png", "inputs": {"n": 10, "seed": 3}})
    # Before it, the same version was asked whether it has classes (this export has none).
    assert [request[2]["signature_name"] for request in received[first:-1]] == ["class_names"]
    assert (tmp_path / "served.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    assert tf.io.decode_png((tmp_path / "served.png").read_bytes()).shape == (3 * 30 + 2, 4 * 30 + 2, 1)
    capsys.readouterr()
    status = cli.sample(["--server", url, "--n", "20000"])
    error = capsys.readouterr().err
    assert status == 2 and "n must be between 1 and 10000; got] [20000]" in error and "[[" not in error


def test_sample_option_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        SampleConfig.from_args(["--server", "localhost:8501"])
    assert "--server must be a URL such as http://localhost:8501" in capsys.readouterr().err
    nobody = f"http://127.0.0.1:{fake_serving.free_port()}"
    status = cli.sample(["--server", nobody, "--out", str(tmp_path / "x.png")])
    assert status == 2 and "Cannot reach TensorFlow Serving" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_grpc_client_casts_to_the_signature_and_takes_the_largest_answers(published, grpc_target):
    target, service = grpc_target
    first = len(service.requests)
    z = np.random.default_rng(1).standard_normal((5, 4))  # float64
    with serving.GrpcClient(target) as client:
        sampled = client.predict("decoder", {"n": 2000, "seed": 3}, "sample")["images"]  # 6.3 MB
        decoded = client.predict("decoder", {"z": z})["images"]
        logits = client.predict("decoder", {"z": z.tolist()}, "logits", version=1)["logits"]
        png = client.predict("decoder", {"n": 10, "seed": 3}, "sample_png")["png_bytes"]
        codes = client.predict("vae", {"images": decoded.astype(np.float64)}, "encode")
        fraction = _refused(client.predict, "decoder", {"n": 2.5, "seed": 3}, "sample")
    assert sampled.shape == (2000, 28, 28, 1)
    def local(signature, **inputs):
        return next(iter(_run_signature(published, "decoder", signature, inputs).values()))

    np.testing.assert_array_equal(sampled, local("sample", n=2000, seed=3))
    np.testing.assert_allclose(decoded, local("serving_default", z=z), atol=1e-6)
    np.testing.assert_allclose(logits, local("logits", z=z), atol=1e-5)
    assert png == local("sample_png", n=10, seed=3)
    assert set(codes) == {"mean", "log_var"} and codes["mean"].shape == (5, 4)
    assert "n must hold integers that fit int32" in str(fraction)
    requests = service.requests[first:]
    # One GetModelMetadata per model, then only Predicts: the latest's answer names its version (1).
    metadata = [(r.model_spec.name, r.model_spec.version.value) for r in requests
                if isinstance(r, get_model_metadata_pb2.GetModelMetadataRequest)]
    assert metadata == [("decoder", 0), ("vae", 0)]
    predicts = [r for r in requests if isinstance(r, predict_pb2.PredictRequest)]
    assert predicts[0].inputs["n"].dtype == tf.int32.as_datatype_enum
    assert predicts[0].inputs["seed"].dtype == tf.int64.as_datatype_enum
    assert predicts[1].inputs["z"].dtype == tf.float32.as_datatype_enum
    assert predicts[1].model_spec.signature_name == "serving_default"
    assert predicts[2].model_spec.version.value == 1 and not predicts[1].model_spec.HasField("version")


def test_grpc_errors_carry_the_servers_code_and_its_message_trimmed(grpc_target):
    with serving.GrpcClient(grpc_target[0]) as client:
        for (model, version, signature, inputs), (status, message) in [
            (("decoder", None, "nope", {"z": np.zeros((1, 4))}), (
                "FAILED_PRECONDITION", 'Serving signature key "nope" not found.')),
            (("decoder", 2, "serving_default", {"z": np.zeros((1, 4))}), (
                "NOT_FOUND", "Servable not found for request: Specific(decoder, 2)")),
            (("decoder", None, "serving_default", {"z": np.full((1, 4), np.inf)}), (
                "INVALID_ARGUMENT", "z must not contain NaN or infinite values : Tensor had Inf values")),
            (("decoder", None, "sample", {"n": [2, 3], "seed": 1}), (
                "INVALID_ARGUMENT", "assertion failed: [n must have shape []; got shape] [2]")),
            (("decoder", None, "sample", {"n": 2, "seed": 1, "extra": 1}), (
                "INVALID_ARGUMENT", "input size does not match signature: 3!=2 len({extra,n,seed}) != "
                "len({n,seed}). Sent extra: {extra}. Missing but required: {}.")),
        ]:
            error = _refused(client.predict, model, inputs, signature, version)
            assert (error.status, error.detail) == (status, message)
            assert str(error) == f"TensorFlow Serving answered {status}: {message}"


def test_the_fakes_refuse_what_the_real_server_refuses(rest, grpc_target):
    """No casting anywhere: the checks the clients now make up for."""
    import grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_target[0]))
    for inputs, message in (({"n": np.int64(3), "seed": np.int64(1)}, "Expects arg[0] to be int32 but int64"),
                            ({"z": np.zeros((1, 4))}, "Expects arg[0] to be float but double")):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "decoder"
        request.model_spec.signature_name = "sample" if "n" in inputs else "serving_default"
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in refused.value.details()
    # REST types JSON by the signature, and 3.0 is not an int32 (json_tensor.cc, AddValueToTensor).
    error = _refused(serving.RestClient(rest[0]).predict, "decoder", {"n": 3.0, "seed": 1}, "sample")
    assert error.detail == "JSON Value: 3.0 Type: Number is not of expected type: int32"


def test_only_the_versions_a_policy_serves_are_found(tiny_vae, tmp_path):
    for _ in range(2):
        publish(tmp_path, tiny_vae)
    inputs = {"n": 1, "seed": 1}
    latest = fake_serving.ModelServer(tmp_path)  # latest { num_versions: 1 }, as serving/models.config
    both = fake_serving.ModelServer(tmp_path, {"decoder": [1, 2]})  # specific { versions: 1 versions: 2 }
    try:
        with fake_rest.rest_server(latest) as (url, _):
            client = serving.RestClient(url)
            assert client.predict("decoder", inputs, "sample", version=2).shape == (1, 28, 28, 1)
            assert _refused(client.predict, "decoder", inputs, "sample", version=1).status == 404
        with fake_rest.rest_server(both) as (url, _):
            client = serving.RestClient(url)
            for version in (1, 2):
                assert client.predict("decoder", inputs, "sample", version=version).shape == (1, 28, 28, 1)
    finally:
        latest.close()
        both.close()


def test_serving_configuration_serves_both_servables_and_rereads_its_folder():
    config = text_format.Parse((REPO / "serving/models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    models = {m.name: (m.base_path, m.model_platform) for m in config.model_config_list.config}
    assert models == {name: (f"/models/{name}", "tensorflow") for name in MODELS}  # absolute paths
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    text = (REPO / "serving/docker-compose.yml").read_text()
    # What `docker compose` reads when TF_SERVING_HOST is not set: ${NAME:-default} gives the default.
    (service,) = yaml.safe_load(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text))["services"].values()
    assert service["image"].startswith("tensorflow/serving:")
    # Loopback only: the server has no authentication. TF_SERVING_HOST opts in to other addresses.
    assert sorted(service["ports"]) == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]
    assert text.count("${TF_SERVING_HOST:-127.0.0.1}:") == 2
    mounts = {container: host for host, container, *_ in (v.split(":") for v in service["volumes"])}
    assert mounts["/models"] == "../saved_models"
    flags = dict(argument.split("=", 1) for argument in service["command"])
    config_file = PurePosixPath(flags["--model_config_file"])
    # The folder is mounted, not the file: git and editors replace the file, which a single-file bind
    # mount would never show; the server rereads the file by its path.
    assert str(config_file) not in mounts and mounts[str(config_file.parent)] == "./"
    assert (REPO / "serving" / config_file.name).is_file()
    assert int(flags["--model_config_file_poll_wait_seconds"]) > 0
    assert int(flags["--file_system_poll_wait_seconds"]) == 1
    # Batching would refuse the scalar inputs of sample, sample_png and interpolate at warm-up.
    assert not [flag for flag in flags if "batching" in flag]
