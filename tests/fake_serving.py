"""A loopback fake of TensorFlow Serving's model server and gRPC API, as strict as the real server.

No tensorflow_model_server runs here, so these follow its source (repository tensorflow/serving) rule by
rule, each citing its file: loading and polling in fake_loading.py, one loaded version in
fake_servable.py, the REST API in fake_rest.py (over the rapidjson-like fake_json*.py). Models run as
the server runs them: a TF1 session over the SavedModel's MetaGraph, fed the request's tensors as they
came, so dtype and shape errors are TensorFlow's own.

    core = ModelServer(model_config_file="/abs/models.config", file_system_poll_wait_seconds=0.05)
    core.wait_for_state("decoder", 2)           # a later version, once the poll has loaded it
    with grpc_server(core) as (target, service), fake_rest.rest_server(core) as (url, received): ...

fake_server.Server is the whole binary: these, with the ports opened only after the initial load.
"""

import contextlib
import socket
import threading
from concurrent import futures

import grpc
from fake_loading import AVAILABLE, END, Manager, Options, read_config, simple_config
from fake_status import Status, invalid
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

NO_DEADLINE_MS = 2**31 - 1  # gpr_time_to_millis of an infinite deadline, saturated


class ModelServer(Manager):
    """ServerCore with the model server's options: loads like the server, then answers its APIs.

    Args:
        root, served: an export root to serve without a config file (see `simple_config`).
        start: load now (blocking until the initial versions are in, as the server does before its
            ports open); False to call `start()` later, e.g. from another thread.
        **flags: `Options` fields, named as the binary's flags.

    Raises:
        Status: when the server would fail to start (unreadable config, a relative base_path, labels
            on unavailable versions, "N servable(s) did not become available: ...").
    """

    def __init__(self, root=None, served=None, *, start=True, **flags):
        super().__init__(Options(**flags))
        self.initial = None if self.options.model_config_file else simple_config(root, served)
        self.work = threading.Lock()  # the config reloads, file-system polls and loads, one at a time
        if start:
            self.start()

    def start(self):
        """ServerCore::Create (server.cc:216-332, load_servables_fast.cc:84-117): every model's latest
        version AVAILABLE, or END (an error: startup fails); waits with no time limit."""
        try:
            self._start()
        except Status:
            self.close()  # main.cc:341-346: the server exits
            raise
        self.thread = threading.Thread(target=self._poll_forever, daemon=True)
        self.thread.start()

    def _start(self):
        options = self.options
        if options.batching_parameters_file and not options.enable_batching:
            raise invalid("server_options.batching_parameters_file is set without setting "
                          "server_options.enable_batching to true.")
        config = self.initial or read_config(options.model_config_file)
        with self.work:
            self.reload_config(config)
        while not self._polled() or self._initial_result() is None:
            period = options.file_system_poll_wait_seconds
            if self.stopping.wait(period if period > 0 else None):
                raise Status("CANCELLED", "The server was stopped before its models became available")
        reached = self._initial_result()
        failed = {key: self.states[key[0]][key[1]] for key, state in reached.items() if state != AVAILABLE}
        if failed:
            listed = "".join(f"{{{{name: {m} version: {v}}}" + (
                f" due to error: {code}: {message}" if code != "OK" else "") + "}, "
                for (m, v), (_, code, message) in sorted(failed.items()))
            raise Status("UNKNOWN", f"{len(failed)} servable(s) did not become available: {{{listed}}}")

    def _polled(self):
        with self.work:
            try:
                self.poll_file_system()
            except Status as status:
                self.note("FileSystemStoragePathSource encountered a filesystem access error: "
                          f"{status.message}")
                return False
            self.manage()
            return True

    def _initial_result(self):
        """ServableStateMonitor: each model's highest version AVAILABLE or END; None while one is missing."""
        reached = {}
        for model in self.models:
            found = [(v, s[0]) for v, s in sorted(self.states.get(model, {}).items(), reverse=True)
                     if s[0] in (AVAILABLE, END)]
            if not found:
                return None
            reached[(model, found[0][0])] = found[0][1]
        return reached

    def _poll_forever(self):
        """The file-system poll (FS:401-439) and config poll (server.cc:165-180, 337-350) threads."""
        periods = [p for p in (self.options.file_system_poll_wait_seconds,
                               self.options.model_config_file_poll_wait_seconds) if p > 0]
        config_due = 0.0
        while periods and not self.stopping.wait(min(periods)):
            config_due += min(periods)
            config_period = self.options.model_config_file_poll_wait_seconds
            if self.options.model_config_file and 0 < config_period <= config_due:
                config_due = 0.0
                self.reload_file()
            if self.options.file_system_poll_wait_seconds > 0:
                self._polled()

    def reload_file(self):
        """Server::PollFilesystemAndReloadConfig: the file read again by path; errors keep the old config."""
        try:
            config = read_config(self.options.model_config_file)
        except Status as status:
            self.note(f"Failed to read ModelServerConfig file: {status.message}")
            return
        try:
            self.reload(config)
        except Status as status:
            self.note(f"PollFilesystemAndReloadConfig failed to ReloadConfig: {status.message}")

    def reload(self, config):
        """ReloadConfig, then the poll and loads it starts (FileSystemStoragePathSource::UpdateConfig)."""
        with self.work:
            self.reload_config(config)
        self._polled()

    def resolve(self, spec):
        """ServableRequestFromModelSpec (server_core.cc:841-892): (name, version or None for the latest)."""
        if not spec.name:
            raise invalid("ModelSpec has no name specified.")
        if spec.WhichOneof("version_choice") == "version_label":
            version = self.labels.get(spec.name, {}).get(spec.version_label)
            if version is None:
                raise invalid(f"Unrecognized servable version label: {spec.version_label}")
            return spec.name, version
        return spec.name, spec.version.value if spec.HasField("version") else None

    def run(self, method, request, timeout_ms):
        """Predict, Classify or Regress: "Missing ModelSpec", then the version, held while it runs."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        with self.handle(*self.resolve(request.model_spec)) as servable:
            return getattr(servable, method)(request, timeout_ms)

    def metadata(self, request):
        """GetModelMetadataImpl (servables/tensorflow/get_model_metadata_impl.cc:33-99)."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        with self.handle(*self.resolve(request.model_spec)) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in servable.meta_graph.signature_def.items():
                signature_map.signature_def[name].CopyFrom(signature)
            response.metadata["signature_def"].Pack(signature_map)
            return response

    def status(self, request):
        """GetModelStatusImpl (model_servers/get_model_status_impl.cc:66-108): every version the
        monitor has seen, highest first; a version label is ignored."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        model = request.model_spec.name
        with self.lock:
            versions = dict(self.states.get(model, {}))
        if request.model_spec.HasField("version"):
            version = request.model_spec.version.value
            if version not in versions:
                raise Status("NOT_FOUND", f"Could not find version {version} of model {model}")
            versions = {version: versions[version]}
        elif not versions:
            raise Status("NOT_FOUND", f"Could not find any versions of model {model}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, (state, code, message) in sorted(versions.items(), reverse=True):
            entry = response.model_version_status.add(
                version=version, state=get_model_status_pb2.ModelVersionStatus.State.Value(state))
            entry.status.error_code = grpc.StatusCode[code].value[0]  # util/status_util.cc ToStatusProto
            entry.status.error_message = message
            entry.status.SetInParent()
        return response

    def close(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=60)
        with self.work:
            for servable in self.servables.values():
                servable.close()
            self.servables.clear()


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer,
                        model_service_pb2_grpc.ModelServiceServicer):
    """The gRPC services (model_servers/prediction_service_impl.cc, model_service_impl.cc); records requests.

    Predict, Classify and Regress run with the client's deadline as RunOptions.timeout_in_ms
    (prediction_service_impl.cc:38-101); MultiInference is not modelled (UNIMPLEMENTED).
    """

    def __init__(self, core):
        self.core, self.requests, self.answers = core, [], []

    def _answer(self, call, request, context):
        self.requests.append(request)
        try:
            answer = call()
        except Status as status:
            self.answers.append(status)
            # model_servers/grpc_status_util.cc: ToGRPCStatus cuts messages at 1024 characters.
            message = status.message if len(status.message) <= 1024 else (
                status.message[:1024] + "...TRUNCATED")
            context.abort(getattr(grpc.StatusCode, status.code),
                          message.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        self.answers.append(answer)
        return answer

    def _timed(self, method, request, context):
        left = context.time_remaining()
        timeout = NO_DEADLINE_MS if left is None else int(left * 1000)
        return self._answer(lambda: self.core.run(method, request, timeout), request, context)

    def Predict(self, request, context):  # noqa: N802 (the gRPC method names)
        return self._timed("predict", request, context)

    def Classify(self, request, context):  # noqa: N802
        return self._timed("classify", request, context)

    def Regress(self, request, context):  # noqa: N802
        return self._timed("regress", request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._answer(lambda: self.core.metadata(request), request, context)

    def GetModelStatus(self, request, context):  # noqa: N802
        return self._answer(lambda: self.core.status(request), request, context)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import model_management_pb2

        def reload():
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                              "ModelConfigList is currently supported")
            self.core.reload(request.config)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.SetInParent()  # ToStatusProto(OK): error_code OK
            return response

        return self._answer(reload, request, context)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def grpc_server(core, port=0):
    """Serves `core` over gRPC on 127.0.0.1; yields (target, PredictionService)."""
    # model_servers/server.cc: builder.SetMaxMessageSize(INT32_MAX), for requests and answers.
    limit = 2**31 - 1
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
    service = PredictionService(core)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(grace=None)
