"""Training on a folder of pictures end to end: train.py, exports, sample.py, evaluate.py, resume."""

import json

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from test_resume import ARGS, _assert_same_run, kill_after_backups

from conftest import colour_images, run_script, synthetic_images, write_pictures
from keras_vae import data
from keras_vae.models import build_vae
from keras_vae.training import Trainer

SMALL = ["--latent-dim", "3", "--hidden-dim", "16", "--batch-size", "16", "--sample-every", "0",
         "--no-progress"]


@pytest.fixture
def rgb_folder(tmp_path):
    """Two class folders of 16x16 RGB pictures, 48 PNGs and 32 JPEGs."""
    folder = tmp_path / "pictures"
    write_pictures(folder / "a", colour_images(48, seed=0))
    write_pictures(folder / "b", colour_images(32, seed=7), suffix=".jpg")
    return folder


def test_train_export_sample_and_evaluate_on_a_folder(rgb_folder, tmp_path):
    trained = run_script("train.py", *SMALL, "--image-dir", str(rgb_folder), "--arch", "conv",
                         "--likelihood", "gaussian", "--epochs", "2", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "on 72 images of shape (16, 16, 3) (streamed from 72 picture files in 2 class folders" in \
        trained.stdout and "validating on 8" in trained.stdout
    encoder = tf.saved_model.load(str(tmp_path / "saved_models/vae/1")).signatures["encode"]
    assert encoder.structured_input_signature[1]["images"].shape.as_list() == [None, 16, 16, 3]
    decoder = tf.saved_model.load(str(tmp_path / "saved_models/decoder/1")).signatures["serving_default"]
    assert decoder(z=tf.zeros([2, 3]))["images"].shape == (2, 16, 16, 3)

    sampled = run_script("sample.py", "--n", "4", "--out", "grid.png", cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    grid = matplotlib.image.imread(tmp_path / "grid.png")
    assert grid.shape[2] in (3, 4) and not np.allclose(grid[..., 0], grid[..., 1])  # colour, not grey

    evaluated = run_script("evaluate.py", "--image-dir", str(rgb_folder), "--k", "4", "--out-dir", "ev",
                           cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads((tmp_path / "ev/evaluation.json").read_text())
    assert results["data"]["images"] == 8 and results["data"]["split"] == "train[90%:]"
    assert np.isfinite(results["nats_per_image"]["nll"]) and "latent_pca.png" in " ".join(results["pictures"])


def test_bad_pictures_stop_training_before_the_first_step_or_are_left_out(tmp_path):
    """Every picture is checked before training, also those an epoch's order leaves out (one epoch of
    40 pictures in batches of 16 never reaches 8 of them)."""
    folder = tmp_path / "pictures"
    write_pictures(folder, synthetic_images(40, 8, 8))
    (folder / "00017.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_pictures(folder, synthetic_images(1, 10, 8), names=["00031"])
    args = [*SMALL, "--image-dir", str(folder), "--epochs", "1", "--train-split", "train"]
    result = run_script("train.py", *args, "--val-split", "train[:16]", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Training" not in result.stdout
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "runs").exists()
    assert "2 pictures cannot be used" in result.stderr and "--skip-bad-pictures" in result.stderr
    assert f"cannot decode {folder}/00017.png: Invalid PNG" in result.stderr
    assert f"{folder}/00031.png is 10 x 8 pixels, but the first picture is 8 x 8" in result.stderr

    result = run_script("train.py", *args, "--val-split", "train[:16]", "--skip-bad-pictures", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Leaving out 2 pictures" in result.stdout and "with --image-size HEIGHT WIDTH" in result.stdout
    assert "on 38 images" in result.stdout
    config = json.loads((tmp_path / "runs/default/config.json").read_text())
    assert config["skipped_pictures"] == [f"{folder}/00017.png", f"{folder}/00031.png"]
    exported = json.loads((tmp_path / "saved_models/decoder/1/config.json").read_text())
    assert exported["skipped_pictures"] == config["skipped_pictures"]


def test_mixed_channels_and_empty_folders_are_refused_at_once(tmp_path):
    empty = run_script("train.py", *SMALL, "--image-dir", str(tmp_path), cwd=tmp_path)
    assert empty.returncode == 2 and "holds no pictures" in empty.stderr


def test_sigkill_then_rerun_on_a_folder_matches_an_uninterrupted_run(tmp_path):
    folder = tmp_path / "pictures"
    write_pictures(folder, synthetic_images(296, seed=3))
    common = [*ARGS, "--image-dir", str(folder), "--train-split", "train[:256]", "--val-split", "train[256:]"]
    plain = run_script("train.py", *common, "--run-dir", "a", "--export-dir", "sa", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "streamed from 256 picture files" in plain.stdout

    kill_after_backups([*common, "--run-dir", "b", "--export-dir", "sb"], tmp_path, tmp_path / "b/backup")
    resumed = run_script("train.py", *common, "--run-dir", "b", "--export-dir", "sb", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from the backup" in resumed.stdout
    _assert_same_run(tmp_path / "a", tmp_path / "sa", tmp_path / "b", tmp_path / "sb")


def _train(strategy, source, val_dataset, initial=None):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_vae("mlp", source.image_shape, latent_dim=3, hidden_dim=16, seed=1)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.005))
        model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.trainable_variables, initial or [], strict=False):
        variable.assign(value)
    start = [v.numpy() for v in model.trainable_variables]
    history = Trainer(model, strategy, steps_per_execution=2, progress=False).fit(source, val_dataset, 2)
    return start, [v.numpy() for v in model.trainable_variables], history


def test_two_replicas_match_one_on_streamed_pictures_and_on_the_same_images_in_memory(rgb_folder, mirrored):
    split = data.open_split("train", image_dir=rgb_folder)
    streamed = split.training_source(batch_size=8, seed=0)
    initial, one, history_one = _train(tf.distribute.get_strategy(), streamed, split.evaluation_dataset(8))
    _, two, history_two = _train(mirrored, streamed, split.evaluation_dataset(8), initial)
    in_memory = data.InMemoryImages(split.load_all()[0], batch_size=8, seed=0)
    _, memory, history_memory = _train(tf.distribute.get_strategy(), in_memory,
                                       split.evaluation_dataset(8), initial)
    for before, a, b, c in zip(initial, one, two, memory, strict=True):
        assert not np.allclose(before, a)
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)  # plain SGD: a wrong scale would show
        np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-7)
    for a, b in zip(history_one, history_two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
