"""What the clients say when nothing answers or the server is slow, their retries, and gRPC's typed fields.

Against small loopback stubs (127.0.0.1) that answer what a test needs: a status, a delay, or a
hand-built gRPC answer with the typed fields the real server fills (the fakes answer the rest).
"""

import contextlib
import json
import logging
import threading
import time
import wsgiref.simple_server
from concurrent import futures
from http import HTTPStatus

import fake_serving
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from keras_vae import serving
from keras_vae.serving import clients, grpc_client

LOGGER = "keras_vae.serving.sessions"


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_stub(answers):
    """A loopback HTTP server giving, request by request, the (status, JSON body, delay) of `answers`.

    Yields (URL, list of the paths asked for); the last answer repeats.
    """
    asked = []

    def application(environ, start_response):
        asked.append(environ["PATH_INFO"])
        status, body, delay = answers[min(len(asked), len(answers)) - 1]
        time.sleep(delay)
        start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    with wsgiref.simple_server.make_server("127.0.0.1", 0, application, handler_class=_Quiet) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", asked
        finally:
            server.shutdown()  # returns once serve_forever has stopped


class StubService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict with `response`, or aborts every call with `abort` (a StatusCode), after `delay`."""

    def __init__(self, response=None, abort=None, delay=0.0):
        self.response, self.abort, self.delay, self.calls = response, abort, delay, 0

    def _answer(self, answer, context):
        self.calls += 1
        time.sleep(self.delay)
        if self.abort is not None:
            context.abort(self.abort, "Server is shutting down")
        return answer

    def GetModelMetadata(self, request, context):  # noqa: N802 (the gRPC method name)
        answer = get_model_metadata_pb2.GetModelMetadataResponse()
        answer.model_spec.version.value = 1
        answer.metadata["signature_def"].Pack(get_model_metadata_pb2.SignatureDefMap())
        return self._answer(answer, context)

    def Predict(self, request, context):  # noqa: N802
        return self._answer(self.response, context)


@contextlib.contextmanager
def grpc_stub(service):
    """Serves `service` on 127.0.0.1; yields its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def typed_response():
    """A PredictResponse as the server writes one (predict_util.cc: AsProtoField): typed fields only."""
    response = predict_pb2.PredictResponse()
    images = response.outputs["images"]
    images.dtype = tf.float32.as_datatype_enum
    for size in (2, 3):
        images.tensor_shape.dim.add().size = size
    images.float_val.extend([0.0, 0.25, 0.5, 0.75, 1.0, 0.125])
    counts = response.outputs["counts"]
    counts.dtype = tf.int64.as_datatype_enum
    counts.tensor_shape.dim.add().size = 2
    counts.int64_val.extend([2**40, -3])
    png = response.outputs["png_bytes"]
    png.dtype = tf.string.as_datatype_enum
    png.string_val.append(b"\x89PNG\x00")  # a scalar: no dims
    return response


def test_grpc_answers_in_typed_fields_are_read_as_arrays_and_bytes():
    response = typed_response()
    assert all(not proto.tensor_content for proto in response.outputs.values())
    expected = {"images": np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.125]], np.float32),
                "counts": np.array([2**40, -3], np.int64)}
    with grpc_stub(StubService(response)) as target, serving.GrpcClient(target) as client:
        answer = client.predict("vae", {"z": np.zeros((2, 4))}, "decode")
    assert answer["png_bytes"] == b"\x89PNG\x00"
    for name, value in expected.items():
        assert answer[name].dtype == value.dtype and answer[name].shape == value.shape, name
        np.testing.assert_array_equal(answer[name], value)
    # The same tensors in tensor_content (--enable_serialization_as_tensor_content) read alike.
    packed = predict_pb2.PredictResponse()
    for name, value in expected.items():
        packed.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    assert packed.outputs["images"].tensor_content
    for name, value in grpc_client.outputs_of(packed).items():
        np.testing.assert_array_equal(value, expected[name])


def test_nothing_listening_reads_cannot_reach_for_both_clients():
    port = fake_serving.free_port()
    with pytest.raises(serving.ServingError) as rest:
        serving.RestClient(f"http://127.0.0.1:{port}").status("vae")
    with serving.GrpcClient(f"127.0.0.1:{port}") as client, pytest.raises(serving.ServingError) as rpc:
        client.predict("vae", {"z": [[0.0]]}, "decode")
    for refused, where in ((rest.value, f"http://127.0.0.1:{port}/v1/models/vae"),
                           (rpc.value, f"127.0.0.1:{port}")):
        assert str(refused).startswith(f"Cannot reach TensorFlow Serving at {where} (")
        assert "answered" not in str(refused) and refused.status is None
    assert "Connection refused" in str(rpc.value) and "gRPC port (8500" in str(rpc.value)


def test_an_unavailable_answer_from_a_running_server_is_the_servers():
    service = StubService(abort=grpc.StatusCode.UNAVAILABLE)
    with grpc_stub(service) as target, serving.GrpcClient(target) as client:
        with pytest.raises(serving.ServingError) as refused:
            client.predict("vae", {}, "decode")
    assert str(refused.value) == "TensorFlow Serving answered UNAVAILABLE: Server is shutting down"
    assert service.calls == 1  # no retries unless asked for


def test_the_servers_own_rest_deadline_surfaces_and_a_slow_server_is_named():
    # The server's deadline (30 s) is shorter than the client's, so its 504 reaches the caller.
    assert clients.DEFAULT_TIMEOUT > 30 and serving.RestClient("http://x").timeout == clients.DEFAULT_TIMEOUT
    timed_out = {"error": "Timed out waiting for notification"}
    with http_stub([(504, timed_out, 0.0)]) as (url, _):
        with pytest.raises(serving.ServingError) as refused:
            serving.RestClient(url).predict("vae", {"n": 10_000, "seed": 1}, "sample")
    assert (refused.value.status, refused.value.detail) == (504, "Timed out waiting for notification")
    assert "--rest_api_timeout_in_ms, 30 s by default" in str(refused.value)
    slow = r"No answer from TensorFlow Serving at {} within 0.2 s"
    with http_stub([(200, {}, 1.0)]) as (url, _):
        with pytest.raises(serving.ServingError, match=slow.format(url + "/v1/models/vae")):
            serving.RestClient(url, timeout=0.2).status("vae")
    with grpc_stub(StubService(delay=1.0)) as target, serving.GrpcClient(target, timeout=0.2) as client:
        with pytest.raises(serving.ServingError, match=slow.format(target) + r" \(DEADLINE_EXCEEDED: "):
            client.served_version("vae")


def test_retries_are_off_by_default_bounded_and_logged(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    starting, loaded = (503, {"error": "starting"}, 0.0), (200, {"model_version_status": []}, 0.0)
    with http_stub([starting, starting, starting, loaded]) as (url, asked):
        with pytest.raises(serving.ServingError):
            serving.RestClient(url).status("vae")
        assert len(asked) == 1 and not caplog.records
        assert serving.RestClient(url, retries=3, backoff=0.01).status("vae") == {"model_version_status": []}
    assert len(asked) == 4
    assert [record.getMessage() for record in caplog.records] == [
        f"TensorFlow Serving answered 503 to {url}/v1/models/vae: starting (retry {k} of 3 in {d} s)"
        for k, d in ((1, 0.01), (2, 0.02))]
    caplog.clear()
    port = fake_serving.free_port()
    start = time.monotonic()
    with serving.GrpcClient(f"127.0.0.1:{port}", retries=2, backoff=0.05) as client:
        with pytest.raises(serving.ServingError, match="Cannot reach"):
            client.served_version("vae")
    assert time.monotonic() - start >= 0.05 + 0.1  # waited twice, the second time twice as long
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and all(m.startswith(f"Cannot reach TensorFlow Serving at 127.0.0.1:{port}")
                                      for m in messages)
    assert messages[1].endswith("(retry 2 of 2 in 0.1 s)")
    # Refusals that a retry cannot change are not retried.
    with http_stub([(400, {"error": "bad"}, 0.0)]) as (url, asked):
        with pytest.raises(serving.ServingError, match="answered 400"):
            serving.RestClient(url, retries=3, backoff=0.01).status("vae")
    assert len(asked) == 1
