"""Loading as TensorFlow Serving's model server does it: flags, config, file-system polls, the manager.

Rules cite tensorflow_serving/: model_servers/server.cc and server_core.cc (the config and its
labels), sources/storage_path/file_system_storage_path_source.cc (FS: which versions are aspired),
core/availability_preserving_policy.cc, aspired_versions_manager.cc, basic_manager.cc and
loader_harness.cc (what loads and unloads when, with retries), core/servable_state_monitor.cc (every
version's state, kept after it ends). One thread does what the server's poll and load threads do.
"""

import contextlib
import dataclasses
import re
import threading
import time
from pathlib import Path

from fake_servable import Servable
from fake_status import Status, invalid
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
VERSION_NAME = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*")  # absl::SimpleAtoi, base 10


@dataclasses.dataclass
class Options:
    """The tensorflow_model_server flags the fake follows, with the binary's defaults (server.h, main.cc).

    Times keep the flags' units; the fake also takes fractions of a second for the poll periods.
    """

    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0  # 0: the config file is read once
    file_system_poll_wait_seconds: float = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    rest_api_timeout_in_ms: int = 30_000
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    allow_version_labels_for_unavailable_models: bool = False


def simple_config(root, served=None):
    """A models.config for an export root: every model folder (or those of `served`), absolute paths.

    Args:
        served: {model: [versions]}, as `model_version_policy { specific { versions: ... } }`; default:
            each folder's latest version (`latest { num_versions: 1 }`).
    """
    config = model_server_config_pb2.ModelServerConfig()
    root = Path(root).resolve()
    names = served or sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in names:
        model = config.model_config_list.config.add(name=name, base_path=str(root / name),
                                                     model_platform="tensorflow")
        if served:
            model.model_version_policy.specific.versions.extend(served[name])
    return config


def read_config(path):
    """ParseProtoTextFile<ModelServerConfig> (util/proto_util.h): read by path every time."""
    try:
        text = Path(path).read_text()
    except OSError as error:  # tensorflow/core/platform/errors.h IOError: the errno's code and text
        codes = {FileNotFoundError: "NOT_FOUND", PermissionError: "PERMISSION_DENIED"}
        code = codes.get(type(error), "UNKNOWN")
        raise Status(code, f"{path}; {error.strerror}")
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError:
        raise invalid(f"Invalid protobuf file: '{path}'")


def validate(config):
    """ValidateModelConfigList (server_core.cc:117-153); the binary has no model_config_list_root_dir."""
    names = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise invalid(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
    for model in config.model_config_list.config:
        if "://" not in model.base_path and not model.base_path.startswith("/"):
            raise invalid(f"Expected model {model.name} to have an absolute path or URI; got "
                          f"base_path()={model.base_path}")


def aspired_versions(model):
    """PollFileSystemForServable (FS:250-340): {version: folder} the policy aspires to.

    Raises:
        Status: when the base path is missing (each poll says so again).
    """
    base = Path(model.base_path)
    if not base.exists():
        raise invalid(f"Could not find base path {model.base_path} for servable {model.name} with error "
                      f"NOT_FOUND: {model.base_path} not found")
    policy = model.model_version_policy
    children = sorted(p.name for p in base.iterdir())
    by_version = {}
    for child in children:  # IndexChildrenByVersion: names that are not int64 numbers are ignored
        if VERSION_NAME.fullmatch(child) and -2**63 <= int(child) < 2**63:
            by_version[int(child)] = base / child
    choice = policy.WhichOneof("policy_choice") or "latest"
    if choice == "all":
        return by_version
    if choice == "specific":
        return {v: by_version[v] for v in policy.specific.versions if v in by_version}
    count = max(policy.latest.num_versions, 1)
    return {v: by_version[v] for v in sorted(by_version)[-count:]}


class Manager:
    """ServerCore's manager with the AvailabilityPreservingPolicy, and its ServableStateMonitor.

    `states` is {model: {version: (state, error code name, error message)}}: every version ever seen.
    """

    def __init__(self, options):
        self.options = options
        self.config = model_server_config_pb2.ModelServerConfig()
        self.models = {}  # the source's config: {name: ModelConfig}
        self.labels = {}
        self.states, self.servables = {}, {}
        self.harnesses = {}  # LoaderHarness: {(model, version): [state, aspired, folder]}
        self.in_use = {}  # {(model, version): handles held}
        self.log = []
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.thread = None

    def note(self, line):
        """A line of the server's log (tests read it)."""
        self.log.append(line)

    def _publish(self, model, version, state, error=None):
        code, message = (error.code, error.message) if error else ("OK", "")
        with self.lock:
            self.states.setdefault(model, {})[version] = (state, code, message)
            self.lock.notify_all()

    def reload_config(self, config):
        """ServerCore::ReloadConfig (server_core.cc:512-547): validate, take it, relabel, re-source."""
        if config.WhichOneof("config") is None:
            return
        validate(config)
        self.config = config
        self._update_labels()
        self.models = {m.name: m for m in config.model_config_list.config}
        for key, harness in self.harnesses.items():
            if key[0] not in self.models:  # removed models: their versions are no longer aspired
                harness[1] = False

    def _update_labels(self):
        """UpdateModelVersionLabelMap (server_core.cc:549-614), rebuilt before models (re)load."""
        labels = {}
        for model in self.config.model_config_list.config:
            for label, version in model.version_labels.items():
                existing = self.labels.get(model.name, {}).get(label)
                allowed = self.options.allow_version_labels_for_unavailable_models and existing in (
                    None, version)
                available = self.states.get(model.name, {}).get(version, (None,))[0] == AVAILABLE
                if not (allowed or available):
                    raise Status("FAILED_PRECONDITION", f"Request to assign label to version {version} of "
                                 f"model {model.name}, which is not currently available for inference")
                labels.setdefault(model.name, {})[label] = version
        self.labels = labels

    def poll_file_system(self):
        """FileSystemStoragePathSource::PollFileSystemAndInvokeCallback (FS:401-439): the first missing
        base path fails the poll of every model."""
        aspired = {name: aspired_versions(model) for name, model in self.models.items()}
        for name, versions in aspired.items():
            if not versions:
                self.note(f"No versions of servable {name} found under base path "
                          f"{self.models[name].base_path}. Did you forget to name your leaf directory as a "
                          "number (eg. '/1/')?")
        for key, harness in self.harnesses.items():
            harness[1] = key[0] in aspired and key[1] in aspired[key[0]]
        for name, versions in aspired.items():
            for version, path in versions.items():
                if (name, version) not in self.harnesses:
                    self.harnesses[(name, version)] = ["new", True, path]
                    self._publish(name, version, START)

    def manage(self):
        """AspiredVersionsManager::ManageState with AvailabilityPreservingPolicy::GetNextAction
        (availability_preserving_policy.cc:47-82), until no action is left."""
        while not self.stopping.is_set():
            action = None
            for model in sorted({key[0] for key in self.harnesses}):
                versions = {v: h for (m, v), h in self.harnesses.items() if m == model}
                serving = sorted(v for v, h in versions.items() if not h[1] and h[0] == "ready")
                aspired = [h for h in versions.values() if h[1]]
                if serving and (not aspired or any(h[0] == "ready" for h in aspired) or len(serving) > 1):
                    action = (self._unload, model, serving[0])
                    break
                new = [v for v, h in versions.items() if h[1] and h[0] == "new"]
                if new:
                    action = (self._load, model, max(new))
                    break
            if action is None:
                break
            action[0](*action[1:])
        for key, harness in list(self.harnesses.items()):  # FlushServables: ended and unaspired
            if not harness[1] and harness[0] in ("error", "end", "new"):
                del self.harnesses[key]

    def _load(self, model, version):
        """LoaderHarness::Load with Retry (loader_harness.cc:74-116, util/retrier.cc:27-54)."""
        harness = self.harnesses[(model, version)]
        self._publish(model, version, LOADING)
        name, options = f"{{name: {model} version: {version}}}", self.options
        for attempt in range(options.max_num_load_retries + 1):
            if attempt:
                if self.stopping.wait(max(options.load_retry_interval_micros, 0) / 1e6):
                    self.note(f"Retrying of Loading servable: {name} was cancelled.")
                    break
                self.note(f"Retrying of Loading servable: {name} retry: {attempt}")
            try:
                servable = Servable(harness[2], version, options.enable_batching,
                                    options.num_request_iterations_for_warmup or 1,
                                    options.enable_model_warmup)
            except Status as status:
                self.note(f"Loading servable: {name} failed: {status}")
                error = status
                continue
            with self.lock:
                self.servables[(model, version)] = servable
            harness[0] = "ready"
            self._publish(model, version, AVAILABLE)
            return
        else:
            self.note(f"Retrying of Loading servable: {name} exhausted max_num_retries: "
                      f"{options.max_num_load_retries}")
        harness[0] = "error"
        self._publish(model, version, END, error)

    def _unload(self, model, version):
        """BasicManager::UnloadServable (basic_manager.cc:554-575): waits for the handles held."""
        self._publish(model, version, UNLOADING)
        with self.lock:
            servable = self.servables.pop((model, version))
            while self.in_use.get((model, version)):
                self.lock.wait()
        servable.close()
        self.harnesses[(model, version)][0] = "end"
        self._publish(model, version, END)

    @contextlib.contextmanager
    def handle(self, model, version=None):
        """GetServableHandle (basic_manager.cc): the version (default: the highest available), held."""
        with self.lock:
            available = sorted(v for m, v in self.servables if m == model)
            chosen = version if version is not None else (available or [None])[-1]
            if chosen not in available:
                wanted = f"Specific({model}, {version})" if version is not None else f"Latest({model})"
                raise Status("NOT_FOUND", f"Servable not found for request: {wanted}")
            key = (model, chosen)
            self.in_use[key] = self.in_use.get(key, 0) + 1
            servable = self.servables[key]
        try:
            yield servable
        finally:
            with self.lock:
                self.in_use[key] -= 1
                self.lock.notify_all()

    def wait_for_state(self, model, version, state=AVAILABLE, timeout=60.0):
        """Waits until `version` of `model` is in `state` (or has ended); returns its (state, code, message).

        Raises:
            TimeoutError: after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                current = self.states.get(model, {}).get(version)
                if current and current[0] in (state, END):
                    return current
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"version {version} of {model} is {current} after {timeout} s, "
                                       f"not {state}")
                self.lock.wait(min(left, 0.5))
