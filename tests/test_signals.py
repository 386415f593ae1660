"""SIGTERM and SIGINT: stop at the next execution boundary with a backup there; the rerun resumes exactly."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_resume import _assert_same_run, tiny_run

from conftest import NO_TF32, REPO, run_script
from keras_vae import data
from keras_vae.errors import Preempted
from keras_vae.training import RunBackup, Trainer, stop_on_signals

# Default backups (after each epoch only): a resume at step S > 0 can only come from the signal's.
ARGS = ["--epochs", "4", "--batch-size", "32", "--latent-dim", "3", "--hidden-dim", "16",
        "--train-split", "train", "--val-split", "test[:40]", "--steps-per-execution", "1",
        "--sample-every", "0", "--no-progress"]
EXIT_SECONDS = 10  # the limit the test allows from the signal to the process's exit


def signal_during_training(command, cwd, signum, when="Epoch 2/"):
    """Starts `python train.py command`, sends `signum` once `when` is printed; returns the output.

    Returns:
        (exit status, seconds from the signal to the exit, stdout and stderr as one text).
    """
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *command], cwd=cwd, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **NO_TF32},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines, seen = [], threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if when in line:
                seen.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert seen.wait(120), "".join(lines)[-3000:]
    sent = time.monotonic()
    process.send_signal(signum)
    process.wait(timeout=60)
    seconds = time.monotonic() - sent
    reader.join()
    return process.returncode, seconds, "".join(lines)


def test_a_signal_mid_run_backs_up_that_step_and_the_rerun_ends_as_an_uninterrupted_run(idx_dir, tmp_path):
    # A class-conditional model (the default one resumes in the other tests), on the labels i % 10,
    # with its TensorBoard reconstructions of labelled images.
    common = [*ARGS, "--data-dir", str(idx_dir), "--conditional", "--tensorboard"]
    # The reference also runs with op determinism on: on CPU it changes nothing and must not fail.
    plain = run_script("train.py", *common, "--deterministic", "--run-dir", "a", "--export-dir", "sa",
                       cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]

    for signum in (signal.SIGTERM, signal.SIGINT):
        run, exported = tmp_path / signum.name, tmp_path / f"{signum.name}_export"
        command = [*common, "--run-dir", str(run), "--export-dir", str(exported)]
        status, seconds, output = signal_during_training(command, tmp_path, signum)
        assert status == 128 + signum, output[-3000:]
        assert seconds < EXIT_SECONDS and "Traceback" not in output
        assert f"Received {signum.name}: finishing the steps that are running" in output
        stopped = re.search(r"stopped: Stopped \(SIG\w+\) at epoch (\d), step (\d) of 8,", output)
        assert stopped, output[-3000:]
        epoch, step = int(stopped[1]), int(stopped[2])
        assert not exported.exists()
        for index in (run / "backup").glob("ckpt-*.index"):  # every backup left is complete
            tf.train.load_checkpoint(str(index.with_suffix("")))

        resumed = run_script("train.py", *command, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"Resuming from the backup at epoch {epoch}, step {step}." in resumed.stdout and step > 0
        _assert_same_run(tmp_path / "a", tmp_path / "sa", run, exported)
        assert json.loads((run / "config.json").read_text())["classes"] == list("0123456789")


def test_the_local_handler_stops_after_the_execution_it_was_running(tmp_path, monkeypatch, capsys):
    """In process: a signal that arrives during step 3 of 8 (steps run 2 at a time) stops at step 4,
    and a second one during that backup changes nothing."""
    images, model, backup = tiny_run(tmp_path)
    strategy = tf.distribute.get_strategy()

    class SignalDuringStep3(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    real_save = backup.manager.save

    def save_with_a_second_signal():
        os.kill(os.getpid(), signal.SIGTERM)
        return real_save()

    monkeypatch.setattr(backup.manager, "save", save_with_a_second_signal)
    with stop_on_signals(strategy, backup) as stop:
        trainer = Trainer(model, strategy, steps_per_execution=2, progress=False, backup=backup,
                          preemption=stop)
        with pytest.raises(Preempted, match=r"epoch 1, step 4 of 8") as raised:
            trainer.fit(data.InMemoryImages(images, 8), data.evaluation_dataset(images, 8), epochs=2,
                        callbacks=[SignalDuringStep3()])
    assert raised.value.exit_status == 143 and model.optimizer.iterations.numpy() == 4
    assert "Received SIGTERM again: already stopping" in capsys.readouterr().out
    assert RunBackup(tmp_path / "backup", model).restore() == (0, 4, [])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back after training
    assert np.isfinite(model.get_weights()[0]).all()
