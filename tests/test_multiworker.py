"""MultiWorkerMirroredStrategy with two worker processes on loopback, as on two machines."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from test_family import VARIANTS
from test_resume import _assert_same_run, _backup_numbers
from variants_worker import train_variants

from conftest import NO_TF32, REPO, run_script, synthetic_images

ARGS = ["--batch-size", "32", "--latent-dim", "3", "--hidden-dim", "16", "--train-split", "train",
        "--val-split", "test[:40]", "--steps-per-execution", "1", "--sample-every", "0", "--no-progress"]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(args, cwd, ports, script="train.py"):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    strategy = ["--strategy", "multiworker"] if script == "train.py" else []
    processes = []
    for index in range(len(ports)):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = open(cwd / f"worker{index}.log", "a")  # noqa: SIM115 - closed with the process
        processes.append(subprocess.Popen(
            [sys.executable, str(REPO / script), *strategy, *args], cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": tf_config, **NO_TF32},
            stdout=log, stderr=subprocess.STDOUT,
        ))
    return processes


def _wait(processes, timeout=180):
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(timeout=max(1, deadline - time.monotonic()))
    return [p.returncode for p in processes]


def test_two_workers_match_one_process_and_only_the_chief_writes(idx_dir, tmp_path):
    args = [*ARGS, "--epochs", "2", "--data-dir", str(idx_dir)]
    single = run_script("train.py", *args, "--run-dir", "one", "--export-dir", "one_sm", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    workers = _start_workers([*args, "--run-dir", "two", "--export-dir", "two_sm"], tmp_path, _free_ports(2))
    assert _wait(workers) == [0, 0], (tmp_path / "worker0.log").read_text()[-3000:]
    assert "2 replica(s)" in (tmp_path / "worker0.log").read_text()
    assert "Exported" not in (tmp_path / "worker1.log").read_text()
    assert sorted(p.name for p in (tmp_path / "two_sm/decoder").iterdir()) == ["1"]
    # Two workers with half a batch each take exactly the steps of one process with the whole batch.
    _assert_same_run(tmp_path / "one", tmp_path / "one_sm", tmp_path / "two", tmp_path / "two_sm",
                     epochs=2)


def test_two_workers_train_every_model_variant_as_one_device(tmp_path):
    # One pair of worker processes trains all the variants, one after another.
    images = synthetic_images(64, 8, 8)
    np.save(tmp_path / "images.npy", images)
    workers = _start_workers([str(tmp_path / "out"), str(tmp_path / "images.npy"), json.dumps(VARIANTS)],
                             tmp_path, _free_ports(2), script="tests/variants_worker.py")
    assert _wait(workers) == [0, 0], (tmp_path / "worker0.log").read_text()[-3000:]
    one_device = train_variants(tf.distribute.get_strategy(), images, VARIANTS)
    for name, (weights, history) in one_device.items():
        for worker in ("worker0", "worker1"):
            trained = np.load(tmp_path / "out" / worker / f"{name}.npz")
            for index, expected in enumerate(weights):
                np.testing.assert_allclose(trained[f"arr_{index}"], expected, rtol=1e-5, atol=1e-6)
            recorded = json.loads((tmp_path / "out" / worker / f"{name}.json").read_text())
            for record, expected in zip(recorded, history, strict=True):
                assert record == pytest.approx(expected, rel=1e-5)


def _one_process_then_two_workers_until(args, tmp_path, ready):
    """Trains `args` in one process (run `one`), then starts two workers (run `two`) and waits for `ready()`.

    Returns:
        (the worker processes, their command, their ports).
    """
    single = run_script("train.py", *args, "--run-dir", "one", "--export-dir", "one_sm", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ports = _free_ports(2)
    command = [*args, "--run-dir", "two", "--export-dir", "two_sm"]
    workers = _start_workers(command, tmp_path, ports)
    deadline = time.monotonic() + 120
    while not ready():
        assert workers[0].poll() is None and time.monotonic() < deadline, "training ended too early"
        time.sleep(0.005)
    return workers, command, ports


def test_a_lost_worker_and_a_restart_resume_from_the_backup(idx_dir, tmp_path):
    args = [*ARGS, "--epochs", "3", "--backup-every-steps", "2", "--data-dir", str(idx_dir)]
    workers, command, ports = _one_process_then_two_workers_until(  # into the second epoch
        args, tmp_path, lambda: max(_backup_numbers(tmp_path / "two/backup"), default=0) >= 5)
    workers[1].send_signal(signal.SIGKILL)
    assert _wait(workers, timeout=90) == [1, -signal.SIGKILL]  # the survivor notices the lost peer
    survivor = (tmp_path / "worker0.log").read_text()
    assert "Restart every worker with the same command" in survivor and "Traceback" not in survivor
    assert not (tmp_path / "two_sm").exists()

    restarted = _start_workers(command, tmp_path, ports)
    assert _wait(restarted) == [0, 0], (tmp_path / "worker0.log").read_text()[-3000:]
    assert "Resuming from the backup at epoch 2" in (tmp_path / "worker0.log").read_text()
    _assert_same_run(tmp_path / "one", tmp_path / "one_sm", tmp_path / "two", tmp_path / "two_sm",
                     epochs=3)


def test_sigterm_to_one_worker_stops_both_at_one_step_and_a_restart_ends_as_one_process(idx_dir, tmp_path):
    # Default backups (epochs only), and batches of 8 so that epochs are long enough to stop inside.
    # The signal comes at the start of epoch 2, and the workers need about 2 s to agree on a step
    # (TensorFlow's handler polls the signal once a second): 5 epochs leave time for that under load.
    args = [*ARGS, "--epochs", "5", "--batch-size", "8", "--data-dir", str(idx_dir)]
    workers, command, ports = _one_process_then_two_workers_until(
        args, tmp_path, lambda: "Epoch 2/" in (tmp_path / "worker0.log").read_text())
    workers[1].send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert _wait(workers, timeout=60) == [143, 143]
    assert time.monotonic() - sent < 15
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    stops = [re.search(r"stopped: Stopped \((.*?)\) at epoch (\d), step (\d+) of 32", log) for log in logs]
    assert all(stops), logs[0][-3000:] + logs[1][-3000:]
    assert stops[0][1] == "another worker received a termination signal" and stops[1][1] == "SIGTERM"
    epoch, step = stops[0].group(2, 3)
    assert stops[1].group(2, 3) == (epoch, step)  # both at the same step
    assert not (tmp_path / "two_sm").exists() and "Traceback" not in logs[0] + logs[1]

    restarted = _start_workers(command, tmp_path, ports)
    assert _wait(restarted) == [0, 0], (tmp_path / "worker0.log").read_text()[-3000:]
    resumed = (tmp_path / "worker0.log").read_text()
    assert f"Resuming from the backup at epoch {epoch}, step {step}." in resumed and int(step) > 0
    _assert_same_run(tmp_path / "one", tmp_path / "one_sm", tmp_path / "two", tmp_path / "two_sm",
                     epochs=5, batch_size=8)
