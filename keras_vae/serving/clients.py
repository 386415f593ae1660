"""Clients for a running TensorFlow Serving server: REST (standard library only) and gRPC.

    client = RestClient("http://localhost:8501")
    images = client.predict("decoder", {"n": 16, "seed": 3}, signature_name="sample")

    png = client.predict("decoder", {"n": 16, "seed": 3}, signature_name="sample_png")  # bytes

    with GrpcClient("localhost:8500") as client:
        images = client.predict("decoder", {"n": 16, "seed": 3}, "sample")["images"]

Both raise `ServingError` when the server refuses a request or cannot be reached; its message is the
server's, without TensorFlow's internal lines. The wire rules they follow are TensorFlow Serving's
(tensorflow_serving/util/json_tensor.cc for REST, servables/tensorflow/predict_util.cc for Predict);
tests/fake_serving.py holds fakes that enforce them. Neither client needs TensorFlow to be imported
until a gRPC client is made.
"""

import base64
import json
import re
import urllib.error
import urllib.request

import numpy as np

from keras_vae.errors import ServingError

DEFAULT_TIMEOUT = 30.0
# gRPC's default receive limit is 4 MiB (about 1,340 images of 28x28x1 float32), below what `sample`
# may answer (10,000 images). Protocol buffers cannot carry a message of 2 GiB or more, so this is the
# largest answer any signature can give over gRPC.
MAX_MESSAGE_BYTES = 2**31 - 1
# TensorFlow appends where in the graph an op failed: lines such as
# "\t [[{{function_node __inference_sample_392}}{{node Assert/Assert}}]]", which mean nothing to a client.
_GRAPH_LOCATION = re.compile(r"^\s*\[\[")


def trim_message(text):
    """`text` (a server's or TensorFlow's error message) without TensorFlow's graph-location lines."""
    lines = [line for line in str(text).splitlines() if not _GRAPH_LOCATION.match(line)]
    return "\n".join(lines).strip()


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


def _is_base64(value):
    """Whether `value` is a JSON base64 object, {"b64": "..."} (json_tensor.cc: IsValBase64Object)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decoded(value):
    """A JSON tensor value with every {"b64": ...} object replaced by its bytes."""
    if _is_base64(value):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def _array(value):
    """A JSON tensor value as a numpy array; bytes stay bytes (a scalar) or go in an object array."""
    value = _decoded(value)
    if isinstance(value, bytes):
        return value
    array = np.asarray(value)
    # numpy's fixed-width bytes type would drop trailing NUL bytes: keep each string whole.
    return np.asarray(value, dtype=object) if array.dtype.kind == "S" else array


def parse_response(payload):
    """The outputs in the JSON body of a REST predict response, as numpy arrays.

    String outputs whose names end in `_bytes` come base64-encoded ({"b64": ...}, json_tensor.cc); they
    are decoded: a scalar to `bytes`, a tensor to an object array of `bytes`.

    Returns:
        {output name: array}, or one array (or `bytes`) when the signature has a single output
        (TensorFlow Serving leaves out the name of a lone output, in both formats).

    Raises:
        ServingError: if the body is in neither format.
    """
    if "predictions" in payload:
        rows = payload["predictions"]
        if rows and isinstance(rows[0], dict) and not _is_base64(rows[0]):
            return {name: _array([row[name] for row in rows]) for name in rows[0]}
        return _array(rows)
    if "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict) and not _is_base64(outputs):
            return {name: _array(value) for name, value in outputs.items()}
        return _array(outputs)
    raise ServingError(f"Not a TensorFlow Serving predict response: {json.dumps(payload)[:200]}")


def error_detail(text):
    """The message in the body of a REST error response, {"error": "..."}, or the body itself, trimmed."""
    try:
        return trim_message(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return trim_message(text)


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
    REST client works without them. The server does not cast inputs (a float64 `z` or an int64 `n` is
    refused), so the client casts each input to the dtype its signature declares, read once per model
    and version with GetModelMetadata.
    """

    def __init__(self, target, timeout=DEFAULT_TIMEOUT):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                             ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._dtypes = {}  # {(model, version, signature): {input name: numpy dtype}}

    def _call(self, method, request):
        """Calls a stub method, turning a gRPC error into a ServingError."""
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            status, detail = error.code().name, trim_message(error.details() or "")
            raise ServingError(f"TensorFlow Serving answered {status}: {detail}", status=status,
                               detail=detail)

    def signatures(self, model, version=None):
        """The SignatureDefMap of `model` (at `version`, default: the latest served), from GetModelMetadata.

        Returns:
            {signature name: SignatureDef}.
        """
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def input_dtypes(self, model, signature_name="serving_default", version=None):
        """{input name: numpy dtype} of a signature, cached per model, version and signature.

        Returns:
            The dtypes; {} for a signature the server does not have (its Predict answer says so).
        """
        import tensorflow as tf

        key = (model, version, signature_name)
        if key not in self._dtypes:
            for name, signature in self.signatures(model, version).items():
                self._dtypes[(model, version, name)] = {
                    alias: tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
                    for alias, info in signature.inputs.items()}
        return self._dtypes.get(key, {})

    def predict(self, model, inputs, signature_name="serving_default", version=None):
        """Runs a signature of `model` (at `version`, default: the latest served).

        Args:
            inputs: {input name: array-like}; numbers, lists and arrays of any numeric dtype are cast
                to the signature's dtypes (a non-integer value for an integer input is refused).

        Returns:
            {output name: array}; a scalar string output (such as `png_bytes`) as `bytes`.

        Raises:
            ServingError: if the server refuses the request, or an input cannot take its dtype.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        dtypes = self.input_dtypes(model, signature_name, version)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(_cast(name, value, dtypes.get(name))))
        response = self._call(self._stub.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return {name: value.item() if value.dtype == object and value.ndim == 0 else value
                for name, value in outputs.items()}

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _cast(name, value, dtype):
    """`value` as an array of `dtype` (None: as it is, for the server to refuse an unknown input).

    Raises:
        ServingError: if a value would change: a fraction, NaN or out-of-range value for an integer.
    """
    array = np.asarray(value)
    if dtype is None or array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer) and array.dtype.kind in "fiu":
        limits = np.iinfo(dtype)
        whole = array.dtype.kind != "f" or (np.isfinite(array).all() and (np.floor(array) == array).all())
        if not (whole and (array >= limits.min).all() and (array <= limits.max).all()):
            raise ServingError(f"Input {name} must hold integers that fit {np.dtype(dtype).name}; "
                               f"got {array if array.size < 8 else array.dtype}.")
    return array.astype(dtype)
