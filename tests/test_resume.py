"""Preemption: a run killed at any point and rerun ends as if it had never been interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_family import VARIANTS

from conftest import NO_TF32, REPO, run_script, synthetic_images
from keras_vae import data
from keras_vae.errors import TrainingDiverged
from keras_vae.models import build_vae, load_vae
from keras_vae.training import RunBackup, Trainer

ARGS = ["--epochs", "4", "--batch-size", "32", "--latent-dim", "3", "--hidden-dim", "16",
        "--train-split", "train", "--val-split", "test[:40]", "--backup-every-steps", "2",
        "--steps-per-execution", "1", "--sample-every", "0", "--no-progress"]


def _backup_numbers(folder):
    return [int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("ckpt-*.index")]


def _outputs(export_dir):
    """What the exported models compute on fixed inputs (with labels, if they take them)."""
    rng = np.random.default_rng(0)
    decoder = tf.saved_model.load(str(export_dir / "decoder/1")).signatures["serving_default"]
    encoder = tf.saved_model.load(str(export_dir / "vae/1")).signatures["encode"]
    labels = ({"labels": tf.constant([0, 1, 2, 3, 9])}
              if "labels" in decoder.structured_input_signature[1] else {})
    images = decoder(z=tf.constant(rng.standard_normal((5, 3)), tf.float32), **labels)["images"].numpy()
    mean = encoder(images=tf.constant(rng.random((5, 28, 28, 1)), tf.float32), **labels)["mean"].numpy()
    return images, mean


def _history(run_dir):
    summary = json.loads((run_dir / "metrics.json").read_text())
    timings = {"train_seconds", "epoch_seconds"}
    return summary["steps"], [{k: v for k, v in r.items() if k not in timings} for r in summary["history"]]


def _assert_same_run(run_a, export_a, run_b, export_b, epochs=4, batch_size=32):
    """Both runs took every step of every epoch once and ended with the same metrics and weights."""
    steps_a, history_a = _history(run_a)
    steps_b, history_b = _history(run_b)
    assert steps_a == steps_b == epochs * (256 // batch_size)
    for record_a, record_b in zip(history_a, history_b, strict=True):
        assert record_b == pytest.approx(record_a, rel=1e-5)
    for a, b in zip(_outputs(export_a), _outputs(export_b), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # Every variable, a learned prior's included: the exports' outputs need not depend on all of them.
    models = [load_vae(run / "model.keras") for run in (run_a, run_b)]
    for a, b in zip(*(model.variables for model in models), strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def kill_after_backups(args, cwd, backup_dir, backups=4):
    """Runs train.py with `args` and kills it (SIGKILL) once it has made `backups` backups."""
    command = [sys.executable, str(REPO / "train.py"), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), **NO_TF32}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once a few mid-epoch backups exist: the point is arbitrary, as a preemption's would be.
    while max(_backup_numbers(backup_dir), default=0) < backups:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_then_rerun_matches_an_uninterrupted_run(idx_dir, tmp_path):
    # A variant (the default model resumes in the other tests): its pseudo-inputs start from the data.
    common = [*ARGS, "--data-dir", str(idx_dir), "--objective", "iwae", "--iw-samples", "2",
              "--prior", "vamp", "--pseudo-inputs", "8"]
    plain = run_script("train.py", *common, "--run-dir", "a", "--export-dir", "sa", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]

    kill_after_backups([*common, "--run-dir", "b", "--export-dir", "sb"], tmp_path, tmp_path / "b/backup")
    assert not (tmp_path / "sb").exists()

    resumed = run_script("train.py", *common, "--run-dir", "b", "--export-dir", "sb", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from the backup" in resumed.stdout
    _assert_same_run(tmp_path / "a", tmp_path / "sa", tmp_path / "b", tmp_path / "sb")
    bound = json.loads((tmp_path / "b/metrics.json").read_text())["bound"]
    assert bound == "IWAE bound, K=2 importance samples"
    assert load_vae(tmp_path / "b/model.keras").vamp_prior.count == 8

    again = run_script("train.py", *common, "--run-dir", "b", "--export-dir", "sb", cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert sorted(p.name for p in (tmp_path / "sb/decoder").iterdir()) == ["1"]


def test_damaged_backups_fall_back_or_stop(idx_dir, tmp_path):
    common = [*ARGS, "--data-dir", str(idx_dir), "--epochs", "1"]
    first = run_script("train.py", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = tmp_path / "runs/default/backup"
    assert len(_backup_numbers(folder)) == 2
    newest = folder / f"ckpt-{max(_backup_numbers(folder))}.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[:40])  # as a kill in the middle of writing might leave it

    longer = run_script("train.py", *[*common, "--epochs", "2"], cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "unreadable" in longer.stdout and "Resuming from the backup at epoch 1, step 6" in longer.stdout

    for path in (tmp_path / "runs/default/backup").glob("ckpt-*.data-*"):
        path.write_bytes(b"garbage")
    broken = run_script("train.py", *[*common, "--epochs", "3"], cwd=tmp_path)
    assert broken.returncode == 2 and "--restart" in broken.stderr and "Traceback" not in broken.stderr
    assert sorted(p.name for p in (tmp_path / "saved_models/decoder").iterdir()) == ["1", "2"]

    restarted = run_script("train.py", *[*common, "--restart"], cwd=tmp_path)
    assert restarted.returncode == 0 and "Resuming" not in restarted.stdout


def test_resuming_with_other_options_is_refused(idx_dir, tmp_path):
    common = [*ARGS, "--data-dir", str(idx_dir), "--epochs", "1"]
    assert run_script("train.py", *common, cwd=tmp_path).returncode == 0
    other = run_script("train.py", *common, "--latent-dim", "5", "--prior", "vamp", cwd=tmp_path)
    assert other.returncode == 2 and "--latent-dim 3 -> 5, --prior auto -> vamp" in other.stderr


def tiny_run(tmp_path, options=None):
    """64 synthetic 8x8 images, a small compiled VAE (SGD; `options` for `build_vae`) and its backups
    in `tmp_path/backup`."""
    images = synthetic_images(64, 8, 8)
    keras.utils.set_random_seed(0)
    model = build_vae("mlp", (8, 8, 1), latent_dim=2, hidden_dim=8, seed=0, **(options or {}))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    model.optimizer.build(model.trainable_variables)
    return images, model, RunBackup(tmp_path / "backup", model)


def test_divergence_stops_at_once_and_keeps_the_last_good_backup(tmp_path):
    images, model, backup = tiny_run(tmp_path)
    strategy = tf.distribute.get_strategy()
    trainer = Trainer(model, strategy, steps_per_execution=1, progress=False, backup=backup)
    train_data, val_dataset = data.InMemoryImages(images, 16), data.evaluation_dataset(images, 16)
    trainer.fit(train_data, val_dataset, epochs=1)
    model.optimizer.learning_rate.assign(1e12)  # a restore would reset it: go on without one
    with pytest.raises(TrainingDiverged, match=r"epoch 1, at step 2\. .*ckpt-1"):
        trainer.fit(train_data, val_dataset, epochs=2, resume=False)
    epoch, step, history = RunBackup(tmp_path / "backup", model).restore()
    assert (epoch, step, len(history)) == (1, 0, 1)
    assert all(np.isfinite(w).all() for w in model.get_weights())  # restored from the good backup


class _Killed(Exception):
    pass


class _KillAt:
    """A `Trainer` preemption handler that ends the run, unsaved, after step `step` of `epoch` (from 0)."""

    def __init__(self, epoch, step):
        self.at = (epoch, step)

    def check(self, epoch, step, steps, history):
        if (epoch, step) == self.at:
            raise _Killed


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_resumes_exactly_from_a_backup_mid_epoch(variant, tmp_path, capsys):
    def run(folder, kill=None):
        images, model, backup = tiny_run(folder, VARIANTS[variant])
        labels = None if model.classes is None else np.arange(64) % len(model.classes)
        trainer = Trainer(model, tf.distribute.get_strategy(), progress=False, backup=backup,
                          backup_every_steps=2, preemption=kill)
        history = trainer.fit(data.InMemoryImages(images, 16, seed=3, labels=labels),
                              data.evaluation_dataset(images, 16, labels=labels), epochs=2)
        return model, [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in history]

    whole, whole_history = run(tmp_path / "whole")
    with pytest.raises(_Killed):  # after step 3 of the second epoch: its last backup is of step 2
        run(tmp_path / "killed", _KillAt(1, 3))
    resumed, resumed_history = run(tmp_path / "killed")
    assert "Resuming from the backup at epoch 2, step 2." in capsys.readouterr().out
    assert int(resumed.optimizer.iterations.numpy()) == 8
    for record, expected in zip(resumed_history, whole_history, strict=True):
        assert record == pytest.approx(expected, rel=1e-6)
    # The weights, the prior's included, and the sampling state: the next steps would agree too.
    for restored, expected in zip(resumed.variables, whole.variables, strict=True):
        np.testing.assert_allclose(restored.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


def test_check_numerics_names_the_op(idx_dir, tmp_path):
    result = run_script("train.py", *ARGS, "--data-dir", str(idx_dir), "--optimizer", "sgd",
                        "--learning-rate", "1e12", "--check-numerics", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "--check-numerics found the first NaN or Inf" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "saved_models").exists()
