"""A loopback fake of TensorFlow Serving's model server and gRPC API, as strict as the real server.

No tensorflow_model_server runs here, so these follow its source (repository tensorflow/serving, and
tensorflow/cc/saved_model/util.cc in TensorFlow); each rule names the file it comes from. Models run as
the server runs them: a TF1 session over the SavedModel's MetaGraph, fed the request's tensors exactly as
they came (no casting), so dtype and shape errors are TensorFlow's own. The REST API is in fake_rest.py.
"""

import contextlib
import socket
from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from keras_vae.serving import exported
from keras_vae.serving.signatures import MODELS

# Status codes by number, as TensorFlow and gRPC share them.
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Status(Exception):
    """A non-OK status: `code` is the gRPC code name, `message` the server's text."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def invalid(message):
    """An INVALID_ARGUMENT status (errors::InvalidArgument)."""
    return Status("INVALID_ARGUMENT", message)


class ModelServer:
    """The servables of an export root: per model, the versions a version policy serves.

    Args:
        root: Export root holding <model>/<version>/.
        served: {model: [versions]}; default: the latest version of each model, as
            `model_version_policy { latest { num_versions: 1 } }` does.
    """

    def __init__(self, root, served=None):
        root = Path(root)
        served = served or {m: exported.versions(root / m)[-1:] for m in MODELS}
        self.bundles = {}
        for model, numbers in served.items():
            for version in numbers:
                self.bundles[(model, version)] = self._load(root / model / str(version), model)

    def _load(self, path, model):
        """(session, MetaGraphDef) of one version, after replaying its warm-up requests.

        servables/tensorflow/saved_model_warmup_util.cc: a version whose warm-up fails does not load.
        """
        session = tf.compat.v1.Session(graph=tf.Graph())
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], str(path))
        for request in exported.read_warmup(path):
            self._run(session, meta_graph, request)
        return session, meta_graph

    def bundle(self, model_spec):
        """(version, session, MetaGraphDef) for a ModelSpec.

        model_servers/server_core.cc: ServableRequestFromModelSpec; core/basic_manager.cc and
        core/manager.h: "Servable not found for request: Specific(name, version)" or "Latest(name)".
        """
        if not model_spec.name:
            raise invalid("ModelSpec has no name specified.")
        versions = sorted(v for m, v in self.bundles if m == model_spec.name)
        if model_spec.HasField("version"):
            version, request = model_spec.version.value, (
                f"Specific({model_spec.name}, {model_spec.version.value})")
        else:
            version, request = (versions or [None])[-1], f"Latest({model_spec.name})"
        if version not in versions:
            raise Status("NOT_FOUND", f"Servable not found for request: {request}")
        return (version, *self.bundles[(model_spec.name, version)])

    def predict(self, request):
        """A PredictResponse (servables/tensorflow/predict_impl.cc and predict_util.cc: RunPredict)."""
        version, session, meta_graph = self.bundle(request.model_spec)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        response.model_spec.version.value = version
        for alias, value in self._run(session, meta_graph, request).items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    @staticmethod
    def _run(session, meta_graph, request):
        """{output alias: array} of a PredictRequest (predict_util.cc, PreProcessPrediction)."""
        name = request.model_spec.signature_name or "serving_default"
        if name not in meta_graph.signature_def:
            raise Status("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        signature = meta_graph.signature_def[name]
        sent, expected = sorted(request.inputs), sorted(signature.inputs)
        # predict_util.cc: VerifyRequestInputsSize (the signatures here have no defaults).
        if len(sent) != len(expected):
            extra, missing = sorted(set(sent) - set(expected)), sorted(set(expected) - set(sent))
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sent)}}})"
                f" != len({{{','.join(expected)}}}). Sent extra: {{{','.join(extra)}}}. Missing but "
                f"required: {{{','.join(missing)}}}.")
        # tensorflow/cc/saved_model/util.cc: GetInputValues feeds each tensor as it came: no casting.
        feeds = {}
        for alias, info in signature.inputs.items():
            if alias not in request.inputs:
                raise invalid(
                    f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no "
                    f"default value provided. Inputs expected to be in the request {{{','.join(sent)}}}, "
                    "or default input alias set: ")
            try:
                value = tf.make_ndarray(request.inputs[alias])
            except (TypeError, ValueError):
                raise invalid(f"tensor parsing error: {alias}")
            feeds[session.graph.get_tensor_by_name(info.name)._as_tf_output()] = value
        aliases = list(signature.outputs)
        fetches = [session.graph.get_tensor_by_name(signature.outputs[a].name)._as_tf_output()
                   for a in aliases]
        try:
            values = session._call_tf_sessionrun(None, feeds, fetches, [], None)
        except tf.errors.OpError as error:  # the session's own status, as Session::Run returns it
            raise Status(CODE_NAMES[error.error_code], error.message)
        return dict(zip(aliases, values, strict=True))

    def metadata(self, request):
        """A GetModelMetadataResponse (servables/tensorflow/get_model_metadata_impl.cc)."""
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        version, _, meta_graph = self.bundle(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in meta_graph.signature_def.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def status(self, model, version=None):
        """The GetModelStatus JSON document (model_servers/get_model_status_impl.cc)."""
        versions = sorted(v for m, v in self.bundles if m == model)
        if version is not None and version not in versions:
            raise Status("NOT_FOUND", f"Could not find version {version} of model {model}")
        if not versions:
            raise Status("NOT_FOUND", f"Could not find any versions of model {model}")
        shown = [version] if version is not None else versions
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in shown]}

    def close(self):
        for session, _ in self.bundles.values():
            session.close()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """The gRPC service (model_servers/prediction_service_impl.cc), recording each request."""

    def __init__(self, core):
        self.core, self.requests = core, []

    def _answer(self, method, request, context):
        self.requests.append(request)
        try:
            return method(request)
        except Status as status:
            # model_servers/grpc_status_util.cc: ToGRPCStatus cuts messages at 1024 characters.
            message = status.message if len(status.message) <= 1024 else (
                status.message[:1024] + "...TRUNCATED")
            context.abort(getattr(grpc.StatusCode, status.code), message)

    def Predict(self, request, context):  # noqa: N802 (the gRPC method name)
        return self._answer(self.core.predict, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._answer(self.core.metadata, request, context)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def grpc_server(core):
    """Serves `core` over gRPC on 127.0.0.1; yields (target, PredictionService)."""
    # model_servers/server.cc: builder.SetMaxMessageSize(INT32_MAX), for requests and answers.
    limit = 2**31 - 1
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[
        ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
    service = PredictionService(core)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(grace=None)

