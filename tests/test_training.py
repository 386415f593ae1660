import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_images
from keras_vae.models import build_vae
from keras_vae.training import Trainer, TrainingDiverged


def _train(strategy, images, initial_weights=None, epochs=2, optimizer=None, batch_size=8):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_vae("mlp", images.shape[1:], latent_dim=3, hidden_dim=16, seed=1)
        model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.05))
        model.optimizer.build(model.trainable_variables)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    initial = model.get_weights()
    trainer = Trainer(model, strategy, steps_per_execution=3, progress=False)
    history = trainer.fit(images, images[:20], epochs=epochs, batch_size=batch_size, seed=0)
    return initial, model.get_weights(), history


def test_two_replicas_match_one_replica():
    images = synthetic_images(48, 12, 12)
    initial, single_weights, single_history = _train(tf.distribute.get_strategy(), images)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    _, mirrored_weights, mirrored_history = _train(mirrored, images, initial_weights=initial)
    # Plain SGD: a gradient N times too large would show directly in the weights.
    for before, one, two in zip(initial, single_weights, mirrored_weights, strict=True):
        assert not np.allclose(before, one)
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6)
    for one, two in zip(single_history, mirrored_history, strict=True):
        for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss", "val_kl_loss"):
            assert two[key] == pytest.approx(one[key], rel=1e-5)


def test_loss_decreases():
    images = synthetic_images(256, 28, 28)
    _, _, history = _train(tf.distribute.get_strategy(), images, epochs=4,
                           optimizer=keras.optimizers.Adam(1e-3), batch_size=32)
    losses = [record["loss"] for record in history]
    assert losses[-1] < 0.9 * losses[0]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_non_finite_loss_stops_training():
    images = synthetic_images(32, 8, 8)
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        _train(tf.distribute.get_strategy(), images, optimizer=keras.optimizers.SGD(1e12))
