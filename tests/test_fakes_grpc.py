"""The gRPC fake, deadlines and HTTP statuses, against TensorFlow Serving's own answers.

Sources: servables/tensorflow/predict_util.cc and predict_impl.cc (Predict), model_servers/
prediction_service_impl.cc (deadlines), get_model_status_impl.cc, http_server.cc (ToHTTPStatusCode),
TensorFlow's tensor.cc (TensorProto reading). Loopback only; every wait is bounded.
"""

import time

import fake_rest
import fake_serving
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from test_fakes import call, error


@pytest.fixture(scope="module")
def served(fake_root):
    """(core, REST URL, Predict stub, the service's record, ModelService stub) of the decoder and toy."""
    core = fake_serving.ModelServer(fake_root, {"decoder": [1], "toy": [1]})
    with fake_rest.rest_server(core) as (url, _), fake_serving.grpc_server(core) as (target, service):
        channel = grpc.insecure_channel(target)
        yield (core, url, prediction_service_pb2_grpc.PredictionServiceStub(channel), service,
               model_service_pb2_grpc.ModelServiceStub(channel))
        channel.close()
    core.close()


def request(model, signature, **inputs):
    message = predict_pb2.PredictRequest()
    message.model_spec.name, message.model_spec.signature_name = model, signature
    for name, value in inputs.items():
        message.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else
                                      tf.make_tensor_proto(value))
    return message


def refusal(stub_method, message):
    with pytest.raises(grpc.RpcError) as refused:
        stub_method(message, timeout=30)
    return refused.value.code().name, refused.value.details()


def test_predict_answers_in_typed_fields(served):
    stub = served[2]
    answer = stub.Predict(request("decoder", "", z=np.zeros((2, 4), np.float32)), timeout=30)
    images = answer.outputs["images"]
    assert images.tensor_content == b"" and len(images.float_val) == 2 * 28 * 28  # predict_util.cc:165-192
    assert [d.size for d in images.tensor_shape.dim] == [2, 28, 28, 1]
    x = np.array([1.5, -2.0], np.float32)
    floats = stub.Predict(request("toy", "floats", x=x), timeout=30)
    ints = stub.Predict(request("toy", "ints", x=x), timeout=30).outputs
    texts = stub.Predict(request("toy", "echo", text=np.array([b"a", b"\xff"], object)), timeout=30).outputs
    assert list(floats.outputs["f32"].float_val) == [1.5, -2.0]
    assert list(floats.outputs["f64"].double_val) == [1.5, -2.0]
    assert list(ints["i32"].int_val) == [1, -2] and list(ints["i64"].int64_val) == [1, -2]
    assert list(texts["text_bytes"].string_val) == [b"a", b"\xff"]
    assert all(not tensor.tensor_content for tensor in [*floats.outputs.values(), *ints.values()])
    spec = floats.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == ("toy", "floats", 1)


def test_predict_honours_output_filter_and_wants_a_model_spec(served):
    stub, message = served[2], request("toy", "floats", x=np.ones(1, np.float32))
    message.output_filter.append("f64")
    assert set(stub.Predict(message, timeout=30).outputs) == {"f64"}
    unknown = "output tensor alias not found in signature: nope Outputs expected to be in the set {f32,f64}."
    for names, text in ((["nope"], unknown), (["f32", "f32"], "duplicate output tensor alias: f32")):
        del message.output_filter[:]
        message.output_filter.extend(names)
        assert refusal(stub.Predict, message) == ("INVALID_ARGUMENT", text)
    assert refusal(stub.Predict, predict_pb2.PredictRequest()) == ("INVALID_ARGUMENT", "Missing ModelSpec")


def test_request_tensors_are_read_as_tensorflow_reads_them(served):
    stub = served[2]

    def floats(values, shape, content=b""):
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=values, tensor_content=content,
                                      tensor_shape={"dim": [{"size": size} for size in shape]})

    for proto, answer in ((floats([1.5], [3]), [1.5, 1.5, 1.5]),  # padded with the last value
                          (floats([1, 2, 3, 4], [2]), [1, 2]),  # extra values ignored
                          (floats([], [2]), [0, 0])):
        outputs = stub.Predict(request("toy", "floats", x=proto), timeout=30).outputs
        assert list(outputs["f32"].float_val) == answer
    assert refusal(stub.Predict, request("toy", "floats", x=floats([], [2], b"\0" * 4))) == (
        "INVALID_ARGUMENT", "tensor parsing error: x")
    assert refusal(stub.Predict, request("toy", "floats", y=floats([1], [1]))) == (
        "INVALID_ARGUMENT", "Signature input alias: x(feed name: floats_x:0) not found in request and no "
        "default value provided. Inputs expected to be in the request {y}, or default input alias set: ")


def test_model_status_over_grpc(served):
    status_stub = served[4]
    message = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"})
    (version,) = status_stub.GetModelStatus(message, timeout=30).model_version_status
    assert (version.version, version.state, version.status.error_code) == (
        1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    assert refusal(status_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest()) == (
        "INVALID_ARGUMENT", "Missing ModelSpec")
    message.model_spec.name = "nope"
    assert refusal(status_stub.GetModelStatus, message) == (
        "NOT_FOUND", "Could not find any versions of model nope")


@pytest.mark.parametrize(("signature", "status", "first_line"), [  # TensorFlow's own failures
    ("missing_file", 404, "missing.txt; No such file or directory"),
    ("read_folder", 400, "; Is a directory"),
    ("corrupt_record", 500, "corrupted record at 0 (Is this even a TFRecord file?)"),
])
def test_http_statuses_of_tensorflow_errors(served, signature, status, first_line):
    answer = call(served[1], "POST", "/v1/models/toy:predict",
                  b'{"signature_name": "%s", "inputs": [1]}' % signature.encode())
    assert answer[0] == status and first_line in answer[2].split(b"\\n")[0].decode()


@pytest.mark.parametrize(("code", "status"), [  # http_server.cc:46-87 ToHTTPStatusCode
    ("CANCELLED", 499), ("UNKNOWN", 500), ("INVALID_ARGUMENT", 400), ("DEADLINE_EXCEEDED", 504),
    ("NOT_FOUND", 404), ("ALREADY_EXISTS", 409), ("PERMISSION_DENIED", 403), ("RESOURCE_EXHAUSTED", 429),
    ("FAILED_PRECONDITION", 400), ("ABORTED", 409), ("OUT_OF_RANGE", 400), ("UNIMPLEMENTED", 501),
    ("INTERNAL", 500), ("UNAVAILABLE", 503), ("DATA_LOSS", 500), ("UNAUTHENTICATED", 401)])
def test_every_status_code_has_the_servers_http_status(served, monkeypatch, code, status):
    """Codes no op here raises: Session::Run itself answers `code` for this one request."""
    def run(*args):
        raise tf.errors.OpError(None, None, f"a {code} from the session", grpc.StatusCode[code].value[0])

    monkeypatch.setattr(tf.compat.v1.Session, "_call_tf_sessionrun", run)
    answer = call(served[1], "POST", "/v1/models/toy:predict", b'{"signature_name": "floats", "inputs": [1]}')
    assert answer[::2] == (status, error(f"a {code} from the session"))


def test_rest_requests_run_with_the_servers_timeout(fake_root):
    core = fake_serving.ModelServer(fake_root, {"toy": [1]}, rest_api_timeout_in_ms=200)
    try:
        with fake_rest.rest_server(core) as (url, _):
            start = time.monotonic()
            body = b'{"signature_name": "sleep", "inputs": [1]}'
            answer = call(url, "POST", "/v1/models/toy:predict", body)
            # http_rest_api_handler.cc:56-61 RunOptions.timeout_in_ms; DirectSession's own message.
            assert answer[::2] == (504, error("Timed out waiting for notification"))
            assert time.monotonic() - start < 4  # the 5-second step was cancelled
    finally:
        core.close()


def test_grpc_requests_run_with_the_clients_deadline(served):
    stub, service = served[2], served[3]
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request("toy", "sleep", x=np.ones(1, np.float32)), timeout=0.5)
    assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # gRPC's own, first
    while not any(getattr(a, "code", None) == "DEADLINE_EXCEEDED" for a in service.answers):
        assert time.monotonic() - start < 4, "the session did not time out with the deadline"
        time.sleep(0.05)
    # prediction_service_impl.cc:38-62: the deadline became RunOptions.timeout_in_ms.
    assert [a.message for a in service.answers if isinstance(a, fake_serving.Status)][-1] == (
        "Timed out waiting for notification")
