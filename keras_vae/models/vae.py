"""The VAE model: its methods, its distribution-aware training and test steps, and `build_vae`."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_vae.images import to_unit_interval
from keras_vae.models.layers import Sampling
from keras_vae.models.losses import RECONSTRUCTION_LOSSES, kl_divergence
from keras_vae.models.networks import build_decoder, build_encoder

# Stateless random numbers differ between algorithms, and "auto_select" may pick another on other
# hardware; a fixed one gives the same samples for the same seed on every machine and server.
RANDOM_ALGORITHM = "philox"


def _global_count(images):
    """The number of examples in the *global* batch, summed over all replicas.

    Optimizers sum gradients across replicas, so each replica's loss must be its sum over examples
    divided by this count; dividing by the local batch size (a plain `reduce_mean`) would make
    gradients N times too large with N replicas.
    """
    count = ops.cast(ops.shape(images)[0], "float32")
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return count


def _checked_input(value, name, shape, unit_interval=False):
    """`value` as a float32 tensor, after checking its static shape against `shape` (None: any size).

    Catches the mistakes a user makes (a missing channel axis, 0-255 pixels) with a message that says
    what to do, instead of a shape error from deep inside the network. The value-range check runs only
    eagerly: in a graph (the serving signatures) `keras_vae.serving.signatures` checks values in the graph.
    """
    tensor = tf.convert_to_tensor(value)
    if tensor.dtype.is_integer and unit_interval:
        raise ValueError(f"{name} must be floats in [0, 1]; got {tensor.dtype.name} values. Divide "
                         "uint8 pixels by 255.")
    expected = "[" + ", ".join("batch" if size is None else str(size) for size in shape) + "]"
    actual = tensor.shape
    mismatch = actual.rank is not None and (actual.rank != len(shape) or any(
        want is not None and got is not None and want != got
        for want, got in zip(shape, actual, strict=True)))
    if mismatch:
        raise ValueError(f"{name} must have shape {expected}; got {tuple(actual)}.")
    tensor = tf.cast(tensor, tf.float32)
    if unit_interval and tf.executing_eagerly() and tf.size(tensor) > 0:
        low, high = float(tf.reduce_min(tensor)), float(tf.reduce_max(tensor))
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1]; got values from {low} to {high}. Scale "
                             "the pixels (e.g. divide uint8 images by 255).")
    return tensor


def _check_same_batch(tensors):
    """Raises ValueError if the tensors' static batch sizes are known and differ.

    Broadcasting would otherwise pair one image with a whole batch silently; in a graph whose sizes are
    unknown, the serving functions check them when the graph runs.
    """
    sizes = {name: tensor.shape[0] for name, tensor in tensors.items()}
    if len({size for size in sizes.values() if size is not None}) > 1:
        raise ValueError(f"{', '.join(sizes)} must have the same batch size; got {sizes}.")


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """A variational autoencoder: loss per image = reconstruction + beta * KL(q(z|x) || N(0, I)).

    Use `encode`, `decode`, `sample` and `reconstruct` on images in [0, 1] of shape [batch, H, W, C];
    the exported serving signatures, the sample grids and evaluation call these same methods. Training
    works with `Model.fit` and with the distribution-aware loop in `keras_vae.training.Trainer`, which runs
    `train_step` and `test_step` through `strategy.run`.

    Calling the model, `vae(images)`, returns the per-pixel *logits* of a reconstruction through one
    random posterior sample z ~ q(z | x), as the training loss sees it; `reconstruct` gives the
    deterministic reconstruction in [0, 1].

    Args:
        encoder: Model mapping images to `[mean, log_var]`.
        decoder: Model mapping latents to per-pixel logits.
        likelihood: "bernoulli" or "gaussian" (see `keras_vae.losses`).
        beta: Weight of the KL term.
        seed: Seed of the sampling layer's random state.
    """

    def __init__(self, encoder, decoder, likelihood="bernoulli", beta=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"likelihood must be one of {sorted(RECONSTRUCTION_LOSSES)}.")
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = beta
        self.seed = seed
        self.sampling = Sampling(seed=seed, name="sampling")
        # The KL weight in use: `beta`, or less during a warm-up (see KLWarmup). A variable, so that
        # changing it does not retrace the compiled step.
        self.kl_weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(beta),
                                         trainable=False, name="kl_weight")
        self._reconstruction = RECONSTRUCTION_LOSSES[likelihood]
        # XLA cannot compile the cross-replica sum of gradients, so only the per-replica part of the
        # step is compiled (when `jit_compile` is on), also under tf.distribute.
        self._xla_gradients = tf.function(self._gradients, jit_compile=True)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        # The encoder and decoder are built functional models, so the VAE is complete as constructed.
        # Keras needs to know it: a model not marked built is saved with a warning, and loading its
        # .keras file would skip the optimizer's state.
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    @property
    def image_shape(self):
        """(height, width, channels) of the images the model takes."""
        return tuple(self.encoder.input_shape[1:])

    @property
    def latent_dim(self):
        return self.decoder.input_shape[-1]

    def encode(self, images):
        """The posterior q(z | x) of images in [0, 1], [batch, H, W, C]: (mean, log_var), float32.

        Raises:
            ValueError: for images of another shape, or (when run eagerly) outside [0, 1].
        """
        images = _checked_input(images, "images", (None, *self.image_shape), unit_interval=True)
        mean, log_var = self.encoder(images, training=False)
        return ops.cast(mean, "float32"), ops.cast(log_var, "float32")

    def decode_logits(self, z):
        """Per-pixel logits [batch, H, W, C], float32, of latents z [batch, latent_dim]."""
        z = _checked_input(z, "z", (None, self.latent_dim))
        return ops.cast(self.decoder(z, training=False), "float32")

    def decode(self, z):
        """Images in [0, 1], [batch, H, W, C], decoded from latents z [batch, latent_dim]."""
        return ops.sigmoid(self.decode_logits(z))

    def sample(self, n, seed=None):
        """n images decoded from z ~ N(0, I).

        The same `seed` gives the same images here and from the exported decoder's `sample` signature,
        on every machine (stateless Philox draws). Without a seed, one is drawn from NumPy's global
        generator, which `keras.utils.set_random_seed` seeds.

        Raises:
            ValueError: if `n` is not a positive whole number.
        """
        if isinstance(n, (int, np.integer)) and (isinstance(n, bool) or n < 1):
            raise ValueError(f"n must be a whole number of images, at least 1; got {n!r}.")
        if seed is None:
            seed = int(np.random.randint(2**31))
        key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        z = tf.random.stateless_normal(tf.stack([n, self.latent_dim]), key, alg=RANDOM_ALGORITHM)
        return self.decode(z)

    def reconstruct(self, images):
        """The decoding of the posterior mean of images in [0, 1]: deterministic, in [0, 1]."""
        return self.decode(self.encode(images)[0])

    def interpolate(self, images_a, images_b, steps):
        """Images decoded at `steps` evenly spaced points from each image's posterior mean to its partner's.

        Args:
            images_a, images_b: Images in [0, 1], [batch, H, W, C], the same batch size.
            steps: Points per pair, at least 2 (both ends included).

        Returns:
            [batch, steps, H, W, C]: step 0 decodes the mean of `images_a`, the last that of `images_b`.

        Raises:
            ValueError: for fewer than 2 steps, or batches of different sizes (checked when known).
        """
        if isinstance(steps, (int, np.integer)) and (isinstance(steps, bool) or steps < 2):
            raise ValueError(f"steps must be a whole number, at least 2; got {steps!r}.")
        mean_a, mean_b = self.encode(images_a)[0], self.encode(images_b)[0]
        _check_same_batch({"images_a": mean_a, "images_b": mean_b})
        weights = tf.linspace(0.0, 1.0, steps)[None, :, None]
        z = (1.0 - weights) * mean_a[:, None] + weights * mean_b[:, None]
        images = self.decode(tf.reshape(z, [-1, self.latent_dim]))
        return tf.reshape(images, tf.concat([tf.shape(z)[:2], self.image_shape], 0))

    def analogy(self, images_a, images_b, images_c):
        """Completes "a is to b as c is to ?": decodes mean(c) + mean(b) - mean(a) of the posteriors.

        Args:
            images_a, images_b, images_c: Images in [0, 1], [batch, H, W, C], the same batch size.

        Raises:
            ValueError: for batches of different sizes (checked when known).
        """
        means = {name: self.encode(images)[0] for name, images in
                 (("images_a", images_a), ("images_b", images_b), ("images_c", images_c))}
        _check_same_batch(means)
        return self.decode(means["images_c"] + means["images_b"] - means["images_a"])

    def call(self, images, training=False):
        """The logits of a reconstruction through one random posterior sample (see the class doc)."""
        mean, log_var = self.encoder(images, training=training)
        return self.decoder(self.sampling([mean, log_var]), training=training)

    def per_example_losses(self, images, training=False):
        """Returns (loss, reconstruction, kl), each of shape [batch], in float32 nats."""
        mean, log_var = self.encoder(images, training=training)
        logits = self.decoder(self.sampling([mean, log_var]), training=training)
        reconstruction = self._reconstruction(images, logits)
        kl = kl_divergence(mean, log_var)
        return reconstruction + ops.cast(self.kl_weight, "float32") * kl, reconstruction, kl

    def _update_metrics(self, loss, reconstruction, kl):
        # Mean over per-example values: the metric variables sum across replicas when read, so the
        # result is the exact mean over every example seen, however the batches were split.
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    @staticmethod
    def _images(data):
        """The images of a batch in [0, 1]; uint8 batches (the training pipeline's) are scaled here."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        return to_unit_interval(images) if images.dtype == tf.uint8 else images

    def _gradients(self, images, count):
        """This replica's gradients of its share of the global mean loss, and its per-example losses."""
        with tf.GradientTape() as tape:
            losses = self.per_example_losses(images, training=True)
            # scale_loss is the identity except under a LossScaleOptimizer (float16 training).
            objective = self.optimizer.scale_loss(ops.sum(losses[0]) / count)
        return tape.gradient(objective, self.trainable_variables), losses

    def train_step(self, data, global_batch_size=None):
        """One optimizer step on a batch (this replica's part of it under tf.distribute).

        Args:
            data: Images, or a tuple whose first element is the images.
            global_batch_size: The size of every global batch, from a caller that feeds only full
                batches (the `Trainer`): then counting the examples needs no cross-replica sum.
                Without it (e.g. under `Model.fit`, whose last batch may be partial) they are counted.
        """
        images = self._images(data)
        count = float(global_batch_size) if global_batch_size else _global_count(images)
        gradients_of = self._xla_gradients if self.jit_compile else self._gradients
        gradients, losses = gradients_of(images, count)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return self._update_metrics(*losses)

    def test_step(self, data):
        return self._update_metrics(*self.per_example_losses(self._images(data)))

    def fit(self, x=None, y=None, *args, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`, refusing an endless dataset without `steps_per_epoch`.

        Keras would run the first epoch of such a dataset (e.g. `InMemoryImages.dataset()`) forever.
        """
        if (isinstance(x, tf.data.Dataset) and steps_per_epoch is None
                and int(x.cardinality()) == tf.data.INFINITE_CARDINALITY):
            raise ValueError("x is an endless dataset: pass steps_per_epoch (for a keras_vae data source, "
                             "steps_per_epoch=source.steps_per_epoch).")
        return super().fit(x, y, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "likelihood": self.likelihood,
            "beta": self.beta,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("encoder", "decoder"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def build_vae(arch, image_shape, latent_dim=20, hidden_dim=400, likelihood="bernoulli", beta=1.0,
              seed=None):
    """Builds a VAE for images of `image_shape`; see `build_encoder` and `build_decoder`."""
    return VAE(
        build_encoder(arch, image_shape, latent_dim, hidden_dim),
        build_decoder(arch, image_shape, latent_dim, hidden_dim),
        likelihood=likelihood,
        beta=beta,
        seed=seed,
        name="vae",
    )
