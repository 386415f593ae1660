"""Callbacks and the two training loops: `Model.fit` and the Trainer run the same steps and events."""

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_images
from keras_vae import data
from keras_vae.config import TrainConfig
from keras_vae.models import build_vae
from keras_vae.training import KLWarmup, SampleGrid, TensorBoardImages, Trainer, train
from keras_vae.training.callbacks import prior_samples

METRICS = {"loss", "reconstruction_loss", "kl_loss"}
LOGS = METRICS | {f"val_{name}" for name in METRICS}


class Recorder(keras.callbacks.Callback):
    """Records every event with its argument and the keys of its logs."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.epoch_logs = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, frozenset(logs)))

    def on_test_end(self, logs=None):
        self.events.append(("test_end", frozenset(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))
        self.epoch_logs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def _model():
    keras.utils.set_random_seed(0)
    model = build_vae("mlp", (12, 12, 1), latent_dim=3, hidden_dim=16, beta=2.0, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False)
    return model


def _both_loops(callbacks_for, epochs=3):
    """Trains one model with the Trainer and an identical one with Model.fit, on the same batches."""
    images = synthetic_images(64, 12, 12)
    source = data.InMemoryImages(images, 16, seed=0)
    val = data.evaluation_dataset(images[:20], 16)
    looped, fitted = _model(), _model()
    for a, b in zip(looped.get_weights(), fitted.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer = Trainer(looped, tf.distribute.get_strategy(), steps_per_execution=3, progress=False)
    history = trainer.fit(source, val, epochs, callbacks=callbacks_for("loop"))
    # steps_per_epoch makes Keras keep one iterator across epochs, as the Trainer does.
    fit_history = fitted.fit(source.dataset(), steps_per_epoch=source.steps_per_epoch, epochs=epochs,
                             validation_data=val, callbacks=callbacks_for("fit"), verbose=0)
    return looped, fitted, history, fit_history.history


def test_model_fit_and_the_trainer_loop_train_alike(tmp_path):
    looped, fitted, history, fit_history = _both_loops(lambda loop: [KLWarmup(2)])
    for a, b in zip(looped.get_weights(), fitted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for epoch, record in enumerate(history):
        for name in LOGS:
            assert record[name] == pytest.approx(fit_history[name][epoch], rel=1e-5), (epoch, name)
    assert float(looped.kl_weight) == float(fitted.kl_weight) == 2.0  # the warm-up ran in both


def test_fit_refuses_an_endless_dataset_without_steps_per_epoch():
    source = data.InMemoryImages(synthetic_images(32, 12, 12), 16)
    with pytest.raises(ValueError, match="endless dataset: pass steps_per_epoch"):
        _model().fit(source.dataset(), epochs=1, verbose=0)


def test_callbacks_hear_the_keras_protocol_under_both_loops(tmp_path):
    recorders = {"loop": Recorder(), "fit": Recorder()}
    _both_loops(lambda loop: [recorders[loop], SampleGrid(tmp_path / loop, every=2, count=4)])
    loop, fit = recorders["loop"], recorders["fit"]
    # 4 steps per epoch in executions of 3: batch end after steps 3 and 4 (indices 2 and 3).
    epoch = [("epoch_begin", 0), ("batch_end", 2, frozenset(METRICS)), ("batch_end", 3, frozenset(METRICS)),
             ("test_end", frozenset(METRICS)), ("epoch_end", 0)]
    assert loop.events[:6] == [("train_begin",), *epoch]
    assert loop.events[-1] == ("train_end",) and len(loop.events) == 2 + 3 * len(epoch)
    for recorder in (loop, fit):
        assert [set(logs) for logs in recorder.epoch_logs] == [LOGS] * 3
    for name in ("loop", "fit"):  # every 2nd epoch and the last
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["epoch_002.png", "epoch_003.png"]
        np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "loop/epoch_003.png"),
                                      matplotlib.image.imread(tmp_path / name / "epoch_003.png"))


def test_a_user_callback_sees_every_epoch_of_train(idx_dir, tmp_path):
    recorder = Recorder()
    config = TrainConfig(data_dir=str(idx_dir), train_split="train[:64]", val_split="test[:32]", epochs=3,
                         batch_size=32, latent_dim=2, hidden_dim=8, sample_every=0, progress=False,
                         run_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "models"))
    summary = train(config, callbacks=[recorder])
    assert [event[1] for event in recorder.events if event[0] == "epoch_end"] == [0, 1, 2]
    for logs, record in zip(recorder.epoch_logs, summary["history"], strict=True):
        assert set(logs) == LOGS and all(logs[name] == record[name] for name in LOGS)
    assert (tmp_path / "run/model.keras").is_file()


def test_train_leaves_the_global_dtype_policy_as_it_found_it(idx_dir, tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    config = TrainConfig(data_dir=str(idx_dir), train_split="train[:64]", val_split="test[:32]", epochs=1,
                         batch_size=32, latent_dim=2, hidden_dim=8, sample_every=0, progress=False,
                         mixed_precision="bfloat16", run_dir=str(tmp_path / "run"),
                         export_dir=str(tmp_path / "models"))
    summary = train(config)
    assert summary["version"] == 1 and np.isfinite(summary["final"]["val_loss"])
    assert keras.mixed_precision.global_policy().name == "float32"


def test_pictures_of_a_class_conditional_model_have_a_row_per_class(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_vae("mlp", (12, 12, 1), latent_dim=3, hidden_dim=16, seed=1, classes=("a", "b", "c"))
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    images, labels = synthetic_images(32, 12, 12), np.arange(32) % 3
    Trainer(model, tf.distribute.get_strategy(), progress=False).fit(
        data.InMemoryImages(images, 16, labels=labels), data.evaluation_dataset(images, 16, labels=labels), 1,
        callbacks=[SampleGrid(tmp_path / "grids", count=10, seed=4),
                   TensorBoardImages(tmp_path / "board", images[:4] / 255.0, seed=4, labels=labels[:4])])
    samples, columns = prior_samples(model, 10, 4)
    np.testing.assert_array_equal(samples, model.sample(9, 4, np.repeat([0, 1, 2], 3)))
    assert columns == 3  # 3 rows of 3 pictures of 12 x 12 pixels, 2 apart
    assert matplotlib.image.imread(tmp_path / "grids/epoch_001.png").shape[:2] == (44, 44)
    assert list((tmp_path / "board/train").iterdir())
