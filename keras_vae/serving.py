"""Clients for a running TensorFlow Serving server: REST (standard library only) and gRPC.

    client = RestClient("http://localhost:8501")
    images = client.predict("decoder", {"n": 16, "seed": 3}, signature_name="sample")

    with GrpcClient("localhost:8500") as client:
        images = client.predict("decoder", {"n": np.int32(16), "seed": np.int64(3)}, "sample")["images"]

Both raise `ServingError` when the server refuses a request or cannot be reached.
"""

import json
import urllib.error
import urllib.request

import numpy as np

from keras_vae.errors import UserError

DEFAULT_TIMEOUT = 30.0


class ServingError(UserError):
    """TensorFlow Serving refused a request, or could not be reached.

    Attributes:
        status: The HTTP status code or gRPC status name; None when no answer came.
        detail: The server's own message (for REST, the "error" of the JSON body).
    """

    def __init__(self, message, status=None, detail=None):
        super().__init__(message)
        self.status = status
        self.detail = detail


def request_body(inputs, signature_name="serving_default", row_format=False):
    """The JSON body of a REST predict request.

    Args:
        inputs: {input name: array-like}.
        signature_name: The signature to run.
        row_format: Send `instances`, one object per example (all inputs must share the batch
            size), instead of the columnar `inputs` object.
    """
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    if not row_format:
        return {"signature_name": signature_name, "inputs": {k: v.tolist() for k, v in arrays.items()}}
    sizes = {name: value.shape[0] if value.ndim else None for name, value in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"The row format needs inputs with one batch size; got {sizes}.")
    (size,) = set(sizes.values())
    rows = [{name: value[i].tolist() for name, value in arrays.items()} for i in range(size)]
    return {"signature_name": signature_name, "instances": rows}


def parse_response(payload):
    """The outputs in the JSON body of a REST predict response, as numpy arrays.

    Returns:
        {output name: array}, or one array when the signature has a single output (TensorFlow Serving
        leaves out the name of a lone output, in both formats).

    Raises:
        ServingError: if the body is in neither format.
    """
    if "predictions" in payload:
        rows = payload["predictions"]
        if rows and isinstance(rows[0], dict):
            return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
        return np.asarray(rows)
    if "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict):
            return {name: np.asarray(value) for name, value in outputs.items()}
        return np.asarray(outputs)
    raise ServingError(f"Not a TensorFlow Serving predict response: {json.dumps(payload)[:200]}")


def error_detail(text):
    """The message in the body of a REST error response, {"error": "..."}, or the body itself."""
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text.strip()


class RestClient:
    """The REST API of a server, e.g. RestClient("http://localhost:8501")."""

    def __init__(self, url, timeout=DEFAULT_TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def model_url(self, model, version=None):
        """The URL of a model, or of one of its versions."""
        return f"{self.url}/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")

    def predict(self, model, inputs, signature_name="serving_default", version=None, row_format=False):
        """Runs a signature of `model` (at `version`, default: the latest served).

        Returns:
            What `parse_response` returns.
        """
        body = request_body(inputs, signature_name, row_format)
        return parse_response(self._call(self.model_url(model, version) + ":predict", body))

    def status(self, model, version=None):
        """The model status document: {"model_version_status": [{"version", "state", ...}, ...]}."""
        return self._call(self.model_url(model, version))

    def _call(self, url, body=None):
        """GETs `url`, or POSTs `body` as JSON to it, and returns the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error_detail(error.read().decode(errors="replace")) or error.reason
            raise ServingError(f"TensorFlow Serving answered {error.code} to {url}: {detail}",
                               status=error.code, detail=detail)
        except OSError as error:
            raise ServingError(
                f"Cannot reach TensorFlow Serving at {url} ({getattr(error, 'reason', error)}). Is the "
                "server running, and is this its REST port (8501 by default)?"
            )
        try:
            return json.loads(text)
        except ValueError:
            raise ServingError(f"TensorFlow Serving sent something other than JSON: {text[:200]!r}")


class GrpcClient:
    """The gRPC PredictionService of a server, e.g. GrpcClient("localhost:8500").

    Needs the `tensorflow-serving-api` package (and so TensorFlow), imported only here so that the
    REST client works without them. Inputs keep their numpy dtypes (pass np.int32 for an int32 input).
    """

    def __init__(self, target, timeout=DEFAULT_TIMEOUT):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, model, inputs, signature_name="serving_default", version=None):
        """Runs a signature of `model` (at `version`, default: the latest served).

        Returns:
            {output name: array}.
        """
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            status = error.code().name
            raise ServingError(f"TensorFlow Serving answered {status}: {error.details()}",
                               status=status, detail=error.details())
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
