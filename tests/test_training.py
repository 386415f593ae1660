import keras
import numpy as np
import pytest
import tensorflow as tf
from test_family import VARIANTS

from conftest import synthetic_images
from keras_vae import data
from keras_vae.errors import TrainingDiverged
from keras_vae.models import build_vae
from keras_vae.training import Trainer, make_optimizer


def _train(strategy, images, initial_weights=None, epochs=2, optimizer=None, batch_size=8,
           jit_compile=False, options=None):
    """Trains a small VAE (`options` for `build_vae`; a conditional one on labels i % classes)."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_vae("mlp", images.shape[1:], latent_dim=3, hidden_dim=16, seed=1, **(options or {}))
        model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.05),
                      jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)
    if initial_weights is not None:
        for variable, value in zip(model.trainable_variables, initial_weights, strict=True):
            variable.assign(value)
    initial = [v.numpy() for v in model.trainable_variables]
    trainer = Trainer(model, strategy, steps_per_execution=3, progress=False)
    labels = None if model.classes is None else np.arange(len(images)) % len(model.classes)
    history = trainer.fit(data.InMemoryImages(images, batch_size, seed=0, labels=labels),
                          data.evaluation_dataset(images[:20], batch_size,
                                                  labels=None if labels is None else labels[:20]),
                          epochs=epochs)
    return initial, [v.numpy() for v in model.trainable_variables], history, model


@pytest.mark.parametrize(("variant", "jit_compile"), [("default", False), ("default", True), ("iwae", False),
                                                     ("vamp", False), ("conditional", False)],
                         ids=["graph", "xla", "iwae", "vamp", "conditional"])
def test_two_replicas_match_one_replica(variant, jit_compile, mirrored):
    images = synthetic_images(48, 12, 12)
    options = VARIANTS.get(variant)
    initial, single_weights, single_history, _ = _train(tf.distribute.get_strategy(), images,
                                                     jit_compile=jit_compile, options=options)
    assert mirrored.num_replicas_in_sync == 2
    _, mirrored_weights, mirrored_history, _ = _train(mirrored, images, initial_weights=initial,
                                                   jit_compile=jit_compile, options=options)
    # Plain SGD: a gradient N times too large would show directly in the weights.
    for before, one, two in zip(initial, single_weights, mirrored_weights, strict=True):
        assert not np.allclose(before, one)
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6)
    for one, two in zip(single_history, mirrored_history, strict=True):
        for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss", "val_kl_loss"):
            assert two[key] == pytest.approx(one[key], rel=1e-5)


def test_loss_decreases():
    images = synthetic_images(256, 28, 28)
    _, _, history, _ = _train(tf.distribute.get_strategy(), images, epochs=4,
                           optimizer=keras.optimizers.Adam(1e-3), batch_size=32)
    losses = [record["loss"] for record in history]
    assert losses[-1] < 0.9 * losses[0]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_non_finite_loss_stops_training():
    images = synthetic_images(32, 8, 8)
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        _train(tf.distribute.get_strategy(), images, optimizer=keras.optimizers.SGD(1e12))


@pytest.mark.parametrize("policy, tolerance", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.01)])
def test_mixed_precision_follows_float32_on_two_replicas(policy, tolerance, mirrored):
    """Plain SGD (Adam would hide a wrong gradient scale) from the same weights as a float32 run."""
    images = synthetic_images(64, 12, 12)
    initial, reference, reference_history, _ = _train(mirrored, images, epochs=3, jit_compile=True)
    half = policy.removeprefix("mixed_")
    assert isinstance(make_optimizer("sgd", 0.05, half), keras.optimizers.LossScaleOptimizer) == (
        half == "float16")
    keras.mixed_precision.set_global_policy(policy)
    try:
        with mirrored.scope():  # the loss scale is a variable of the optimizer's own
            optimizer = keras.optimizers.SGD(0.05)
            if half == "float16":
                # Small enough that no step overflows and is skipped (the default 2^15 skips the
                # first steps while it adapts, which would make the runs differ for that reason).
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**4)
        _, weights, history, model = _train(mirrored, images, initial_weights=initial, epochs=3,
                                            optimizer=optimizer, jit_compile=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert getattr(optimizer, "inner_optimizer", optimizer).iterations.numpy() == 3 * 64 // 8
    hidden = model.encoder.layers[2]
    assert (hidden.compute_dtype, hidden.variable_dtype) == (half, "float32")
    assert model.encoder.get_layer("log_var").compute_dtype == "float32"
    assert model.sampling.compute_dtype == "float32" and model.decoder.layers[1].compute_dtype == half
    losses = model.per_example_losses(tf.constant(images[:4], tf.float32) / 255.0)
    assert all(loss.dtype == tf.float32 for loss in losses)
    assert all(w.dtype == np.float32 for w in weights)
    # The updates match float32's to the precision of the 16-bit compute; a wrong gradient scale
    # (loss scale not undone, or per-replica instead of global mean) would be off by a factor.
    for start, expected, actual in zip(initial, reference, weights, strict=True):
        error = np.linalg.norm(actual - expected) / np.linalg.norm(expected - start)
        assert error < tolerance
    for record, expected in zip(history, reference_history, strict=True):
        assert record["loss"] == pytest.approx(expected["loss"], rel=tolerance / 5)
