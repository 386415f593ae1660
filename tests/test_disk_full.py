"""A full disk during a backup or an export: one message, exit status 3, nothing lost, rerun continues.

train.py runs in this process (the `command` fixture): the message, the exit status and the files left
are the point, not the process.
"""

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from keras_vae import publish
from keras_vae.errors import DiskFull
from keras_vae.models import build_vae
from keras_vae.serving import exported
from keras_vae.serving import publish as publishing
from keras_vae.serving.signatures import MODELS
from keras_vae.training import RunBackup, run

ARGS = ["--batch-size", "32", "--latent-dim", "3", "--hidden-dim", "16", "--train-split", "train",
        "--val-split", "test[:40]", "--sample-every", "0", "--no-progress"]


@contextlib.contextmanager
def _small_filesystem(folder, kilobytes):
    """Mounts a tmpfs of `kilobytes` at `folder` (root only); skips the test where that is forbidden."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; test_*_injected cover the same code paths")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder, leave_kilobytes):
    """Fills `folder`'s file system up to `leave_kilobytes` free; returns the filler file."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave_kilobytes * 1024))
    return filler


def _error_line(stderr):
    """The one `error:` line the script printed (TensorFlow's own log lines aside)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if "_temp" in p.name or p.name.startswith(".tmp-"))


def test_full_run_folder_then_full_export_root_then_rerun_exports(idx_dir, tmp_path, command):
    common = [*ARGS, "--data-dir", str(idx_dir), "--run-dir", "run"]
    # Room for the backups (about 320 KB each), model.keras (the same) and their staged copies.
    with _small_filesystem(tmp_path / "run", 2048) as run, _small_filesystem(tmp_path / "sm", 1024) as sm:
        first = command("train.py", *common, "--epochs", "1", "--export-dir", "other", cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]

        filler = _fill(run, leave_kilobytes=100)  # less than one backup (about 320 KB)
        full_run = command("train.py", *common, "--epochs", "2", "--export-dir", "sm", cwd=tmp_path)
        assert full_run.returncode == 3, full_run.stderr[-3000:]
        message = _error_line(full_run.stderr)
        assert message.startswith(f"error: {run / 'backup'} is full")
        assert "the next backup needs about 0.3 MB" in message
        assert "the last backup, " in message and "ckpt-1, is kept" in message
        assert "rerun the same command" in message
        assert _leftovers(run) == [] and sorted(p.name for p in (run / "backup").glob("ckpt-*")) == [
            "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
        filler.unlink()

        _fill(sm, leave_kilobytes=200)  # less than one version (about 0.6 MB)
        full_export = command("train.py", *common, "--epochs", "2", "--export-dir", "sm", cwd=tmp_path)
        assert full_export.returncode == 3, full_export.stderr[-3000:]
        assert "Resuming from the backup at epoch 2, step 0" in full_export.stdout
        message = _error_line(full_export.stderr)
        assert message.startswith(f"error: {sm} is full")
        assert "the export needs about 0." in message and "no partial version was left" in message
        assert "exports it without training again" in message
        assert _leftovers(sm) == [] and exported.versions(sm / "decoder") == exported.versions(sm / "vae")
        assert exported.versions(sm / "decoder") == []
        (sm / "filler").unlink()

        rerun = command("train.py", *common, "--epochs", "2", "--export-dir", "sm", cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "Resuming from the backup at epoch 3, step 0" in rerun.stdout
        assert "Epoch 2/2" not in rerun.stdout  # nothing trained again
        assert exported.versions(sm / "decoder") == exported.versions(sm / "vae") == [1]


def _no_space(*_, **__):
    raise tf.errors.ResourceExhaustedError(None, None, "part-00000; No space left on device [Op:SaveV2]")


def test_full_backup_folder_injected(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = build_vae("mlp", (8, 8, 1), latent_dim=2, hidden_dim=8, seed=0)
    model.compile(optimizer="sgd")
    model.optimizer.build(model.trainable_variables)
    backup = RunBackup(tmp_path / "backup", model)
    backup.save(1, 0, [{"epoch": 1}])
    before = sorted(p.name for p in (tmp_path / "backup").iterdir())
    size = sum(p.stat().st_size for p in (tmp_path / "backup").glob("ckpt-1.*"))

    def half_written_save():  # what SaveV2 leaves when the disk fills up
        (tmp_path / "backup/ckpt-2_temp").mkdir()
        (tmp_path / "backup/ckpt-2_temp/part-00000-of-00001.data-00000-of-00001.tempstate1").write_bytes(b"x")
        _no_space()

    monkeypatch.setattr(backup.manager, "save", half_written_save)
    expected = rf"backup is full .* needs about {size / 1e6:.1f} MB.*ckpt-1, is kept"
    with pytest.raises(DiskFull, match=expected):
        backup.save(1, 3, [{"epoch": 1}])
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == before
    assert RunBackup(tmp_path / "backup", model).restore() == (1, 0, [{"epoch": 1}])


def test_full_export_root_injected(tiny_vae, tmp_path, monkeypatch):
    assert publish(tmp_path, tiny_vae) == 1
    size = sum(f.stat().st_size for name in MODELS for f in (tmp_path / name / "1").rglob("*")
               if f.is_file())
    real_write_warmup = publishing.write_warmup

    def fail_on_the_vae(path, model_name, module):  # after the decoder is staged
        if model_name == "vae":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write_warmup(path, model_name, module)

    monkeypatch.setattr(publishing, "write_warmup", fail_on_the_vae)
    expected = rf"is full .* needs about {size / 1e6:.1f} MB.*versions \[1\] are intact"
    with pytest.raises(DiskFull, match=expected):
        publish(tmp_path, tiny_vae)
    assert _leftovers(tmp_path) == [] and exported.versions(tmp_path / "decoder") == [1]
    monkeypatch.setattr(publishing, "write_warmup", real_write_warmup)
    assert publish(tmp_path, tiny_vae) == 2


def test_other_write_errors_are_not_reported_as_a_full_disk(tiny_vae, tmp_path, monkeypatch):
    def denied(*_, **__):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(publishing, "write_warmup", denied)
    with pytest.raises(PermissionError):
        publish(tmp_path, tiny_vae)


def test_full_run_folder_while_writing_model_keras_injected(tmp_path, monkeypatch):
    model = build_vae("mlp", (8, 8, 1), latent_dim=2, hidden_dim=8, seed=0)
    model.compile(optimizer="sgd")
    model.optimizer.build(model.trainable_variables)

    def no_space(path):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(model, "save", no_space)
    with pytest.raises(DiskFull, match=r"the model file needs about 0\.0 MB.*the backups are intact"):
        run._save_keras_file(model, tmp_path / "model.keras", chief=True)
    assert list(tmp_path.iterdir()) == []
