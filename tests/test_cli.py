"""train.py and sample.py end to end, in fresh processes, as a user runs them (their user errors in this
process where the process is not the point: the `command` fixture)."""

import json
import socket
import time

import matplotlib.image
import pytest

from conftest import run_script

TRAIN_ARGS = ["--epochs", "1", "--batch-size", "32", "--latent-dim", "4", "--hidden-dim", "32",
              "--train-split", "train", "--val-split", "test[:40]", "--sample-every", "1",
              "--no-progress", "--tensorboard"]


def test_train_then_sample(idx_dir, tmp_path):
    result = run_script("train.py", *TRAIN_ARGS, "--data-dir", str(idx_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Exported version 1" in result.stdout
    for name in ("decoder", "vae"):
        assert (tmp_path / "saved_models" / name / "1" / "saved_model.pb").exists()
    config = json.loads((tmp_path / "runs/default/config.json").read_text())
    assert config["latent_dim"] == 4 and config["data_dir"] == str(idx_dir)
    metrics = json.loads((tmp_path / "saved_models/decoder/1/metrics.json").read_text())
    assert set(metrics["final"]) >= {"loss", "reconstruction_loss", "kl_loss", "val_loss"}
    assert metrics["bound"] == "ELBO, KL in closed form"
    assert "Model: prior normal; loss is the negative ELBO, KL in closed form." in result.stdout
    assert matplotlib.image.imread(tmp_path / "runs/default/samples/epoch_001.png").shape[:2] == (
        242, 242)  # 64 images of 28 px in an 8x8 grid with 2 px gaps

    # keras.callbacks.TensorBoard's layout: training scalars in train/, validation in validation/.
    board = tmp_path / "runs/default/tensorboard"
    assert {"epoch_loss", "epoch_kl_loss", "samples", "reconstructions", "bound"} <= _tensorboard_tags(
        board / "train")
    assert {"epoch_loss", "epoch_reconstruction_loss"} <= _tensorboard_tags(board / "validation")
    assert (tmp_path / "runs/default/model.keras").is_file()

    result = run_script("sample.py", "--n", "10", "--out", "grid.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # 10 images: 4 columns, 3 rows of 28 px, 2 px gaps.
    assert matplotlib.image.imread(tmp_path / "grid.png").shape[:2] == (3 * 30 + 2, 4 * 30 + 2)


def _tensorboard_tags(folder):
    import tensorflow as tf

    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    return tags


def _assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_idx_file_is_a_clear_error(idx_dir, tmp_path, command):
    (idx_dir / "train-images-idx3-ubyte.gz").unlink()
    result = command("train.py", *TRAIN_ARGS, "--data-dir", str(idx_dir), cwd=tmp_path)
    _assert_user_error(result, "train-images-idx3-ubyte")
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "runs").exists()


def test_bad_options_are_rejected_before_anything_runs(tmp_path):
    _assert_user_error(run_script("train.py", "--batch-size", "0", cwd=tmp_path), "--batch-size")
    _assert_user_error(run_script("train.py", "--beta", "-1", cwd=tmp_path), "--beta")
    _assert_user_error(run_script("train.py", "--epoch", "3", cwd=tmp_path), "unrecognized")
    _assert_user_error(run_script("train.py", "--latent-dim", "two", cwd=tmp_path), "invalid int")


@pytest.mark.parametrize("script", ["train.py", "sample.py", "evaluate.py", "explore.py"])
def test_help_lists_every_option(script, tmp_path):
    from test_docs import COMMANDS

    result = run_script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for action in COMMANDS[script].parser()._actions:
        assert all(name in result.stdout for name in action.option_strings)


def test_sample_without_an_export_says_what_to_do(tmp_path, command):
    _assert_user_error(command("sample.py", cwd=tmp_path), "No exported model", "train.py")


def _network_reachable():
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_network_reachable(), reason="the network is reachable: cannot test offline")
def test_offline_tfds_stops_quickly_and_points_at_data_dir(tmp_path):
    start = time.monotonic()
    result = run_script("train.py", "--epochs", "1", cwd=tmp_path,
                        env={"TFDS_DATA_DIR": str(tmp_path / "tfds")}, timeout=120)
    assert time.monotonic() - start < 30
    _assert_user_error(result, "Cannot download", "--data-dir")
