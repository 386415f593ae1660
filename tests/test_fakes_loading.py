"""The fake loads as TensorFlow Serving's model server does: config, polls, policies, retries, warm-up.

Sources: model_servers/server.cc, server_core.cc, main.cc; sources/storage_path/
file_system_storage_path_source.cc; core/availability_preserving_policy.cc, loader_harness.cc,
util/retrier.cc; servables/tensorflow/saved_model_warmup_util.cc; batching/batching_util.h. Polls run
every 0.05 s here, retries 10 ms apart; every wait is bounded.
"""

import os
import shutil
import socket
import threading
import time

import fake_models
import fake_rest
import fake_serving
import grpc
import numpy as np
import pytest
import tensorflow as tf
from fake_server import Server
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc
from test_fakes import call, error

FAST = {"file_system_poll_wait_seconds": 0.05, "load_retry_interval_micros": 10_000}
POLICIES = {"latest1": "latest { num_versions: 1 }", "latest2": "latest { num_versions: 2 }", "all": "all {}",
            "specific": "specific { versions: 1 versions: 3 }"}


def publish(fake_root, base, version, warmup=None):
    """Copies toy/1 to `base`/`version` under a hidden name, then renames it (as keras_vae publishes)."""
    staged = base / f".tmp-{version}"
    shutil.copytree(fake_root / "toy" / "1", staged)
    if warmup is not None:
        fake_models.write_warmup(staged, **warmup)
    os.rename(staged, base / str(version))


def write_config(path, models, labels=""):
    """A models.config, replaced the way git replaces a file (a new file renamed over the old)."""
    entries = "".join(f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
                      f"model_version_policy {{ {policy} }} {labels if name == 'toy' else ''} }}\n"
                      for name, (base, policy) in models.items())
    staged = path.with_name(path.name + ".new")
    staged.write_text(f"model_config_list {{\n{entries}}}\n")
    os.replace(staged, path)
    return str(path)


def until(condition, what, timeout=10.0):
    """Waits (bounded) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def versions(core, model):
    """[(version, state name)] of GetModelStatus."""
    answer = core.status(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": model}))
    return [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
            for s in answer.model_version_status]


def test_the_flags_default_as_the_binarys():
    options = fake_serving.Options()  # model_servers/server.h, main.cc
    assert (options.max_num_load_retries, options.load_retry_interval_micros,
            options.file_system_poll_wait_seconds, options.rest_api_timeout_in_ms,
            options.enable_batching) == (5, 60_000_000, 1, 30_000, False)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_version_policies_choose_the_versions(fake_root, tmp_path, policy):
    for version in (1, 2, 3):
        publish(fake_root, tmp_path / "toy", version)
    config = write_config(tmp_path / "models.config", {"toy": (tmp_path / "toy", POLICIES[policy])})
    core = fake_serving.ModelServer(model_config_file=config, **FAST)
    try:
        expected = {"latest1": [3], "latest2": [3, 2], "all": [3, 2, 1], "specific": [3, 1]}[policy]
        assert versions(core, "toy") == [(v, "AVAILABLE") for v in expected]  # highest first
    finally:
        core.close()


def test_warmup_is_optional_limited_to_1000_records_and_a_failure_fails_the_load(fake_root, tmp_path):
    publish(fake_root, tmp_path / "toy", 1)
    (tmp_path / "toy" / "1" / fake_models.WARMUP_FILE).unlink()  # saved_model_warmup_util.cc:82-89
    fake_serving.ModelServer(tmp_path, **FAST).close()
    fake_models.write_warmup(tmp_path / "toy" / "1", records=1001)
    path = tmp_path.resolve() / "toy" / "1" / fake_models.WARMUP_FILE
    with pytest.raises(fake_serving.Status) as refused:  # load_servables_fast.cc:84-117
        fake_serving.ModelServer(tmp_path, max_num_load_retries=0, **FAST)
    assert (refused.value.code, refused.value.message) == ("UNKNOWN", (
        "1 servable(s) did not become available: {{{name: toy version: 1} due to error: INVALID_ARGUMENT: "
        f"Number of warmup records exceeds the maximum (1000) at {path}}}, }}"))  # ServableId braces too


def test_failed_loads_are_retried_then_end_with_their_error(fake_root, tmp_path):
    publish(fake_root, tmp_path / "toy", 1, warmup={"signature": "nope"})
    core = fake_serving.ModelServer(tmp_path, start=False, max_num_load_retries=2, **FAST)
    with pytest.raises(fake_serving.Status, match="1 servable"):
        core.start()
    failed = 'Loading servable: {name: toy version: 1} failed: FAILED_PRECONDITION: Serving signature key ' \
             '"nope" not found.'
    assert core.log == [failed, "Retrying of Loading servable: {name: toy version: 1} retry: 1", failed,
                        "Retrying of Loading servable: {name: toy version: 1} retry: 2", failed,
                        "Retrying of Loading servable: {name: toy version: 1} exhausted max_num_retries: 2"]
    assert core.states["toy"][1] == ("END", "FAILED_PRECONDITION", 'Serving signature key "nope" not found.')


def test_config_errors_stop_the_server(fake_root, tmp_path):
    path = tmp_path / "models.config"
    for text, (code, message) in [  # server_core.cc:117-153; util/proto_util.h
        (None, ("NOT_FOUND", f"{path}; No such file or directory")),
        ("model_config_list { nope: 1 }", ("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'")),
        ('model_config_list { config { name: "toy" base_path: "toy" model_platform: "tensorflow" } }',
         ("INVALID_ARGUMENT", "Expected model toy to have an absolute path or URI; got base_path()=toy")),
        ('model_config_list { config { name: "toy" base_path: "/a" } '
         'config { name: "toy" base_path: "/b" } }',
         ("INVALID_ARGUMENT", "Illegal to list model toy multiple times in config list")),
    ]:
        if text is not None:
            path.write_text(text)
        with pytest.raises(fake_serving.Status) as refused:
            fake_serving.ModelServer(model_config_file=str(path), **FAST)
        assert (refused.value.code, refused.value.message) == (code, message)
    with pytest.raises(fake_serving.Status, match="batching_parameters_file is set without setting"):
        fake_serving.ModelServer(fake_root, {"toy": [1]}, batching_parameters_file="/x")  # server.cc:239-243


def test_new_versions_roll_in_without_a_gap_and_the_old_ones_end(fake_root, tmp_path):
    publish(fake_root, tmp_path / "toy", 1)
    core = fake_serving.ModelServer(tmp_path, **FAST)
    answers, done = [], threading.Event()
    with fake_rest.rest_server(core) as (url, _), fake_serving.grpc_server(core) as (target, _):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
        message = predict_pb2.PredictRequest(model_spec={"name": "toy", "signature_name": "floats"})
        message.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(1, np.float32)))

        def ask():
            deadline = time.monotonic() + 30
            while not done.is_set() and time.monotonic() < deadline and len(answers) < 2000:
                try:
                    answers.append(stub.Predict(message, timeout=10).model_spec.version.value)
                except grpc.RpcError as refused:
                    answers.append(refused.code().name)

        asking = threading.Thread(target=ask)
        asking.start()
        try:
            publish(fake_root, tmp_path / "toy", 2)
            assert core.wait_for_state("toy", 2, timeout=30)[0] == "AVAILABLE"
            assert core.wait_for_state("toy", 1, "END", timeout=30) == ("END", "OK", "")
        finally:
            done.set()
            asking.join(timeout=30)
        assert answers and set(answers) <= {1, 2}  # availability preserved: never a refusal
        assert stub.Predict(message, timeout=10).model_spec.version.value == 2
        assert call(url, "GET", "/v1/models/toy")[2].count(b'"state"') == 2
        assert call(url, "GET", "/v1/models/toy/versions/1")[::2] == (200, (  # get_model_status_impl.cc
            b'{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "END",\n   "status": {\n'
            b'    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}'))
    core.close()


def test_a_version_that_fails_to_load_ends_with_its_error_beside_the_one_serving(fake_root, tmp_path):
    publish(fake_root, tmp_path / "toy", 1)
    core = fake_serving.ModelServer(tmp_path, max_num_load_retries=1, **FAST)
    try:
        publish(fake_root, tmp_path / "toy", 2, warmup={"signature": "nope"})
        assert core.wait_for_state("toy", 2, timeout=30) == (
            "END", "FAILED_PRECONDITION", 'Serving signature key "nope" not found.')
        assert versions(core, "toy") == [(2, "END"), (1, "AVAILABLE")]  # descending
        with fake_rest.rest_server(core) as (url, _):
            assert b'"error_message": "Serving signature key \\"nope\\" not found."' in call(
                url, "GET", "/v1/models/toy")[2]
    finally:
        core.close()


def _refused(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_ports_stay_closed_until_the_models_have_loaded(fake_root, tmp_path):
    base = tmp_path / "models" / "toy"
    config = write_config(tmp_path / "models.config", {"toy": (base, POLICIES["latest1"])})
    ports = fake_serving.free_port(), fake_serving.free_port()
    server = Server(*ports, model_config_file=config, **FAST)
    thread = threading.Thread(target=server.build_and_start)
    thread.start()
    try:
        missing = ("FileSystemStoragePathSource encountered a filesystem access error: Could not find base "
                   f"path {base} for servable toy with error NOT_FOUND: {base} not found")
        until(lambda: server.core.log.count(missing) >= 3 or not all(map(_refused, ports)),
              "three polls")  # file_system_storage_path_source.cc:250-262: said again on each poll
        assert all(_refused(port) for port in ports)
        base.mkdir(parents=True)  # empty: still waiting, and saying why (FS:313-318)
        until(lambda: any("No versions of servable toy" in line for line in server.core.log), "the warning")
        assert all(_refused(port) for port in ports)
        publish(fake_root, base, 1)
        assert server.started.wait(30) and server.error is None
        assert call(server.urls[1], "GET", "/v1/models/toy")[0] == 200 and not _refused(ports[0])
    finally:
        server.close()
        thread.join(timeout=30)


def test_the_config_file_is_reread_by_path_and_labels_come_from_it(fake_root, tmp_path):
    for model in ("toy", "other"):
        publish(fake_root, tmp_path / model, 1)
    path = tmp_path / "models.config"
    toy, other = (tmp_path / "toy", POLICIES["latest1"]), (tmp_path / "other", POLICIES["latest1"])
    label = 'version_labels { key: "stable" value: 1 }'
    write_config(path, {"toy": toy}, label)
    with pytest.raises(fake_serving.Status) as refused:  # server_core.cc:549-584: not yet available
        fake_serving.ModelServer(model_config_file=str(path), **FAST)
    assert (refused.value.code, refused.value.message) == ("FAILED_PRECONDITION", (
        "Request to assign label to version 1 of model toy, which is not currently available for inference"))
    write_config(path, {"toy": toy})
    core = fake_serving.ModelServer(model_config_file=str(path), model_config_file_poll_wait_seconds=0.05,
                                    **FAST)
    with fake_rest.rest_server(core) as (url, _):
        stable = ("POST", "/v1/models/toy/labels/stable:predict",
                  b'{"signature_name": "floats", "inputs": [1]}')
        assert call(url, *stable)[::2] == (400, error("Unrecognized servable version label: stable"))
        write_config(path, {"toy": toy, "other": other}, label)  # replaced, as git does
        assert core.wait_for_state("other", 1, timeout=30)[0] == "AVAILABLE"
        until(lambda: call(url, *stable)[0] == 200, "the label")
        path.write_text("not a config")
        until(lambda: f"Failed to read ModelServerConfig file: Invalid protobuf file: '{path}'" in core.log,
              "the refusal")
        write_config(path, {"toy": toy})  # a model taken out of the config is unloaded
        assert core.wait_for_state("other", 1, "END", timeout=30) == ("END", "OK", "")
    core.close()
    labelled = fake_serving.ModelServer(model_config_file=write_config(path, {"toy": toy}, label),
                                        allow_version_labels_for_unavailable_models=True, **FAST)
    assert labelled.resolve(model_pb2.ModelSpec(name="toy", version_label="stable")) == ("toy", 1)
    labelled.close()


def test_batching_refuses_scalar_inputs_even_in_warmup_and_large_batches(fake_root, tmp_path):
    fake_models.save_scalar(tmp_path / "scalar" / "1")
    with pytest.raises(fake_serving.Status) as refused:  # batching_util.h:81-110, at warm-up
        fake_serving.ModelServer(tmp_path, enable_batching=True, max_num_load_retries=0, **FAST)
    assert refused.value.message == (
        "1 servable(s) did not become available: {{{name: scalar version: 1} due to error: INVALID_ARGUMENT: "
        "Batching Run() input tensors must have at least one dimension}, }")
    core = fake_serving.ModelServer(fake_root, {"toy": [1]}, enable_batching=True)
    with fake_rest.rest_server(core) as (url, _):
        rows = b'{"signature_name": "floats", "inputs": [%s]}'
        assert call(url, "POST", "/v1/models/toy:predict", rows % b", ".join([b"1"] * 1000))[0] == 200
        assert call(url, "POST", "/v1/models/toy:predict", rows % b", ".join([b"1"] * 1001))[::2] == (
            400, error("Task size 1001 is larger than maximum input batch size 1000"))
    core.close()
