"""Clients for a running TensorFlow Serving server: REST (standard library only here) and gRPC.

    client = RestClient("http://localhost:8501")
    images = client.predict("decoder", {"n": 16, "seed": 3}, signature_name="sample")
    png = client.predict("decoder", {"n": 16, "seed": 3}, signature_name="sample_png")  # bytes
    # Calls whose answers must come from one trained model, even while versions roll:
    middle = client.consistent("vae", lambda session: session.predict(..., "encode") ...)

    with GrpcClient("localhost:8500") as client:       # keras_vae.serving.grpc_client
        images = client.predict("decoder", {"n": 16, "seed": 3}, "sample")["images"]

Both raise `ServingError` when the server refuses a request or cannot be reached; its message is the
server's, without TensorFlow's internal lines, or says that nothing answered. The wire rules they
follow are TensorFlow Serving's (tensorflow_serving/util/json_tensor.cc for REST,
servables/tensorflow/predict_util.cc for Predict); tests/fake_serving.py holds fakes that enforce
them. Neither client needs TensorFlow to be imported until a gRPC client is made. Pinned sessions and
retries are in `keras_vae.serving.sessions`.
"""

import base64
import json
import re
import socket
import urllib.error
import urllib.request

import numpy as np

from keras_vae.errors import ServingError
from keras_vae.serving.sessions import Pinning, highest_available, retrying

# The server gives every REST request 30 s (--rest_api_timeout_in_ms, model_servers/server.h) and then
# answers 504 "Timed out waiting for notification"; waiting longer lets that answer reach the caller.
DEFAULT_TIMEOUT = 60.0
SERVER_TIMEOUT_HINT = ("the server's own deadline for a REST request, --rest_api_timeout_in_ms, 30 s by "
                       "default: ask for less in one request, or raise it")
RETRY_BACKOFF = 1.0
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


class Unreachable(ServingError):
    """Nothing answered: no server listens there, or it closed the connection without an answer."""


def can_retry(error):
    """Whether a request may succeed later: nothing answered, or the server said UNAVAILABLE."""
    return isinstance(error, Unreachable) or error.status in (503, "UNAVAILABLE")


class RestClient(Pinning):
    """The REST API of a server, e.g. RestClient("http://localhost:8501").

    Args:
        url: The server's REST address.
        timeout: Seconds to wait for an answer; longer than the server's own 30 s, so its 504 shows.
        retries: How many times to try again when nothing answered or the server answered 503, as
            while a server starts; each retry is logged. 0 (the default): fail at once.
        backoff: Seconds before the first retry; each later one waits twice as long.
    """

    def __init__(self, url, timeout=DEFAULT_TIMEOUT, retries=0, backoff=RETRY_BACKOFF):
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

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

    def served_version(self, model):
        """The version requests without one go to: the highest AVAILABLE in the model's status."""
        return highest_available(model, self.status(model))

    def _call(self, url, body=None):
        """GETs `url`, or POSTs `body` as JSON to it, and returns the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        return retrying(lambda: self._call_once(url, data), self.retries, self.backoff, can_retry)

    def _call_once(self, url, data):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error_detail(error.read().decode(errors="replace")) or error.reason
            hint = f" ({SERVER_TIMEOUT_HINT})" if error.code == 504 else ""
            raise ServingError(f"TensorFlow Serving answered {error.code} to {url}: {detail}{hint}",
                               status=error.code, detail=detail)
        except OSError as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, socket.timeout):
                raise ServingError(f"No answer from TensorFlow Serving at {url} within {self.timeout} s: "
                                   "raise the client's `timeout`, or ask for less in one request.")
            raise Unreachable(
                f"Cannot reach TensorFlow Serving at {url} ({reason or type(error).__name__}). Is the "
                "server running, and is this its REST port (8501 by default)?"
            )
        try:
            return json.loads(text)
        except ValueError:
            raise ServingError(f"TensorFlow Serving sent something other than JSON: {text[:200]!r}")
