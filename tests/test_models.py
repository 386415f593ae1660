import traceback

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import data
from keras_vae.errors import UserError
from keras_vae.models import VAE, build_vae, conv_filters
from keras_vae.models import vae as vae_module
from keras_vae.training import KLWarmup, Trainer


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes_follow_the_data(arch, image_shape):
    vae = build_vae(arch, image_shape, latent_dim=5, hidden_dim=32, seed=0)
    images = np.random.default_rng(0).random((3, *image_shape)).astype("f4")
    mean, log_var = vae.encoder(images)
    assert mean.shape == (3, 5) and log_var.shape == (3, 5)
    assert vae(images).shape == (3, *image_shape)
    loss, reconstruction, kl = vae.per_example_losses(images)
    assert loss.shape == reconstruction.shape == kl.shape == (3,)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(reconstruction + kl), rtol=1e-6)


def test_mlp_is_the_classic_784_400_20_network():
    vae = build_vae("mlp", (28, 28, 1))
    kernels = [tuple(w.shape) for w in vae.encoder.weights + vae.decoder.weights if w.ndim == 2]
    assert kernels == [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]


@pytest.mark.parametrize(("image_shape", "filters", "coarse"), [
    ((28, 28, 1), (32, 64), (7, 7)),  # MNIST: the network of earlier versions, unchanged
    ((32, 32, 3), (32, 64, 128), (4, 4)),
    ((64, 64, 3), (32, 64, 128, 256), (4, 4)),
    ((96, 64, 3), (32, 64, 128, 256), (6, 4)),
    ((256, 256, 3), (32, 64, 128, 256, 256, 256), (4, 4)),
    ((30, 30, 1), (32,), (15, 15)),
])
def test_conv_stages_follow_the_image_size(image_shape, filters, coarse):
    assert conv_filters(image_shape) == filters
    vae = build_vae("conv", image_shape, latent_dim=2, hidden_dim=8)
    stages = [layer for layer in vae.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert tuple(layer.filters for layer in stages) == filters
    assert tuple(stages[-1].output.shape[1:3]) == coarse
    assert vae.decoder.output_shape[1:] == image_shape


@pytest.mark.parametrize("image_shape", [(27, 27, 1), (6, 6, 3), (14, 9, 1)])
def test_conv_rejects_sizes_it_cannot_halve(image_shape):
    with pytest.raises(UserError, match="must be even and at least 8"):
        build_vae("conv", image_shape)


def test_beta_weights_the_kl_term():
    images = np.random.default_rng(1).random((4, 28, 28, 1)).astype("f4")
    plain = build_vae("mlp", (28, 28, 1), beta=1.0, seed=2)
    heavy = VAE.from_config({**plain.get_config(), "beta": 3.0})
    for part in ("encoder", "decoder"):
        getattr(heavy, part).set_weights(getattr(plain, part).get_weights())
    loss1, rec1, kl1 = (np.asarray(t) for t in plain.per_example_losses(images))
    loss3, rec3, kl3 = (np.asarray(t) for t in heavy.per_example_losses(images))
    np.testing.assert_allclose(rec1, rec3, rtol=1e-6)  # same seed, same noise
    np.testing.assert_allclose(loss3, rec3 + 3.0 * kl3, rtol=1e-6)


def test_vae_config_round_trip():
    vae = build_vae("conv", (28, 28, 1), latent_dim=4, hidden_dim=8, likelihood="gaussian", seed=3)
    clone = VAE.from_config(vae.get_config())
    assert (clone.likelihood, clone.beta, clone.seed) == ("gaussian", 1.0, 3)
    assert [w.shape for w in clone.weights] == [w.shape for w in vae.weights]


def test_model_fit_runs_the_same_train_step():
    vae = build_vae("mlp", (28, 28, 1), latent_dim=2, hidden_dim=16, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).random((64, 28, 28, 1)).astype("f4")
    history = vae.fit(images, epochs=2, batch_size=16, validation_data=(images,), verbose=0)
    assert set(history.history) >= {"loss", "reconstruction_loss", "kl_loss", "val_loss"}
    assert history.history["loss"][1] < history.history["loss"][0]


def test_kl_warmup_raises_the_weight_linearly_to_beta():
    vae = build_vae("mlp", (28, 28, 1), latent_dim=2, hidden_dim=8, beta=2.0)
    warmup = KLWarmup(epochs=4)
    warmup.set_model(vae)
    weights = []
    for epoch in range(6):
        warmup.on_epoch_begin(epoch)
        weights.append(float(vae.kl_weight))
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    images = np.random.default_rng(0).random((2, 28, 28, 1)).astype("f4")
    warmup.on_epoch_begin(1)
    loss, reconstruction, kl = (np.asarray(t) for t in vae.per_example_losses(images))
    np.testing.assert_allclose(loss, reconstruction + 0.5 * kl, rtol=1e-6)


def test_full_batches_add_no_cross_replica_sum_and_partial_ones_are_counted_exactly(monkeypatch, mirrored):
    strategy = mirrored
    callers = []
    real_all_reduce = tf.distribute.ReplicaContext.all_reduce

    def spy(self, reduce_op, value, options=None):
        callers.append(any("_global_count" in frame.name for frame in traceback.extract_stack()))
        return real_all_reduce(self, reduce_op, value, options)

    monkeypatch.setattr(tf.distribute.ReplicaContext, "all_reduce", spy)
    with strategy.scope():
        vae = build_vae("mlp", (8, 8, 1), latent_dim=2, hidden_dim=8, seed=0)
        vae.compile(optimizer="sgd")
        vae.optimizer.build(vae.trainable_variables)
    seen = []
    real_train_step = vae.train_step

    def train_step(batch, global_batch_size=None):
        seen.append((batch.dtype, tuple(batch.shape), global_batch_size))
        return real_train_step(batch, global_batch_size)

    vae.train_step = train_step
    images = (np.arange(32 * 64) % 256).astype(np.uint8).reshape(32, 8, 8, 1)
    Trainer(vae, strategy, steps_per_execution=2, progress=False).fit(
        data.InMemoryImages(images, 8, seed=0), data.evaluation_dataset(images[:8], 8), epochs=1)
    # uint8 batches, full: the step's only cross-replica sum is the gradients' (the optimizer's).
    assert seen and all(entry == (tf.uint8, (4, 8, 8, 1), 8) for entry in seen)
    assert callers and not any(callers)

    callers.clear()

    @tf.function
    def count(iterator):
        return strategy.run(vae_module._global_count, args=(next(iterator),))

    # 7 examples in batches of 4: the last splits 2 + 1, and both replicas must count 3.
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((7, 2), "f4")).batch(4)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    counts = [[float(c) for c in strategy.experimental_local_results(count(iterator))] for _ in range(2)]
    assert counts == [[4, 4], [3, 3]] and all(callers)
