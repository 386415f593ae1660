"""The gRPC client of a running TensorFlow Serving server (PredictionService), and reading its answers.

    with GrpcClient("localhost:8500") as client:
        images = client.predict("decoder", {"n": 16, "seed": 3}, "sample")["images"]

Needs the `tensorflow-serving-api` package (and so TensorFlow), imported when a client is made, so that
the REST client (`keras_vae.serving.clients`) works without them.
"""

import numpy as np

from keras_vae.errors import ServingError
from keras_vae.serving.clients import DEFAULT_TIMEOUT, RETRY_BACKOFF, Unreachable, can_retry, trim_message
from keras_vae.serving.sessions import Pinning, retrying

# gRPC's default receive limit is 4 MiB (about 1,340 images of 28x28x1 float32), below what `sample`
# may answer (10,000 images). Protocol buffers cannot carry a message of 2 GiB or more, so this is the
# largest answer any signature can give over gRPC.
MAX_MESSAGE_BYTES = 2**31 - 1
# gRPC answers UNAVAILABLE itself when it cannot connect; a channel that is not READY within this
# many seconds afterwards means that nothing answered.
READY_CHECK_SECONDS = 0.2


def outputs_of(response):
    """{output name: array} of a PredictResponse; a scalar string output (such as `png_bytes`) as bytes.

    The server fills the typed fields (`float_val`, `int_val`, `int64_val`, `string_val`, ...;
    servables/tensorflow/predict_util.cc), or `tensor_content` when started with
    --enable_serialization_as_tensor_content; `tf.make_ndarray` reads either.
    """
    import tensorflow as tf

    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    return {name: value.item() if value.dtype == object and value.ndim == 0 else value
            for name, value in outputs.items()}


class GrpcClient(Pinning):
    """The gRPC PredictionService of a server, e.g. GrpcClient("localhost:8500").

    The server does not cast inputs (a float64 `z` or an int64 `n` is refused), so the client casts
    each input to the dtype its signature declares, read once per model and version with
    GetModelMetadata.

    Args:
        target: host:port of the server's gRPC port.
        timeout: Seconds per call; the server also stops the model's run at this deadline.
        retries: How many times to try again when nothing answered or the server answered
            UNAVAILABLE, as while a server starts; each retry is logged. 0 (the default): fail at once.
        backoff: Seconds before the first retry; each later one waits twice as long.
    """

    def __init__(self, target, timeout=DEFAULT_TIMEOUT, retries=0, backoff=RETRY_BACKOFF):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.target, self.timeout, self.retries, self.backoff = target, timeout, retries, backoff
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                             ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._dtypes = {}  # {(model, version, signature): {input name: numpy dtype}}

    def _call(self, method, request):
        """Calls a stub method (retried as `retries` says), turning a gRPC error into a ServingError."""
        return retrying(lambda: self._call_once(method, request), self.retries, self.backoff, can_retry)

    def _call_once(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            status, detail = error.code().name, trim_message(error.details() or "")
            if status == "UNAVAILABLE" and not self._ready():
                raise Unreachable(f"Cannot reach TensorFlow Serving at {self.target} ({detail}). Is the "
                                  "server running, and is this its gRPC port (8500 by default)?")
            if status == "DEADLINE_EXCEEDED":
                raise ServingError(f"No answer from TensorFlow Serving at {self.target} within "
                                   f"{self.timeout} s ({status}: {detail}): raise the client's `timeout`, "
                                   "or ask for less in one request.", status=status, detail=detail)
            raise ServingError(f"TensorFlow Serving answered {status}: {detail}", status=status,
                               detail=detail)

    def _ready(self):
        """Whether the channel is connected (so an UNAVAILABLE came from the server itself)."""
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=READY_CHECK_SECONDS)
            return True
        except grpc.FutureTimeoutError:
            return False

    def _metadata(self, model, version=None):
        """(version, {signature name: SignatureDef}) of `model` (at `version`, default: the latest served).

        Caches the input dtypes of every signature for that version (and for None, the latest).
        """
        import tensorflow as tf
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        served = response.model_spec.version.value
        for name, signature in signature_map.signature_def.items():
            dtypes = {alias: tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
                      for alias, info in signature.inputs.items()}
            self._dtypes[(model, version, name)] = self._dtypes[(model, served, name)] = dtypes
        return served, dict(signature_map.signature_def)

    def signatures(self, model, version=None):
        """The SignatureDefMap of `model` (at `version`, default: the latest served), from GetModelMetadata.

        Returns:
            {signature name: SignatureDef}.
        """
        return self._metadata(model, version)[1]

    def served_version(self, model):
        """The version requests without one go to (GetModelMetadata answers with it)."""
        return self._metadata(model)[0]

    def input_dtypes(self, model, signature_name="serving_default", version=None):
        """{input name: numpy dtype} of a signature, cached per model, version and signature.

        Returns:
            The dtypes; {} for a signature the server does not have (its Predict answer says so).
        """
        if not any(key[:2] == (model, version) for key in self._dtypes):
            self._metadata(model, version)
        return self._dtypes.get((model, version, signature_name), {})

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
        return outputs_of(self._call(self._stub.Predict, request))

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
