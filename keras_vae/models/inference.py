"""What a trained VAE answers: encode, decode, sample, reconstruct and log_prior, with labels for a
class-conditional model (the `keras_vae.Autoencoder` methods, and the prior's density).

The pictures, evaluation and the serving signatures call these methods; `VAE` (in
`keras_vae.models.vae`) inherits them and adds the training.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_vae.models import priors
from keras_vae.models.inputs import check_same_batch, checked_input, checked_labels

# Stateless random numbers differ between algorithms, and "auto_select" may pick another on other
# hardware; a fixed one gives the same samples for the same seed on every machine and server.
RANDOM_ALGORITHM = "philox"
# `sample` draws eps from the key [seed, 0] (as it always has) and VampPrior components from [seed, 1].
COMPONENT_STREAM = 1


class Inference:
    """The methods of a VAE on images, latents and labels; a mixin of `keras_vae.models.VAE`.

    It uses the model's `encoder`, `decoder`, `classes` (None, or the class names), `prior` ("normal",
    "class" or "vamp"), `class_prior`, `vamp_prior`, `pseudo_inputs`, `image_shape` and `latent_dim`.
    Labels are class indices: one integer for every example, or one per example; the networks of a
    class-conditional model see them one-hot.
    """

    def _one_hot(self, labels):
        return None if labels is None else tf.one_hot(labels, len(self.classes), dtype=tf.float32)

    def _encoded(self, images, labels, training=False):
        one_hot = self._one_hot(labels)
        mean, log_var = self.encoder(images if one_hot is None else [images, one_hot], training=training)
        return ops.cast(mean, "float32"), ops.cast(log_var, "float32")

    def _logits(self, z, labels, training=False):
        one_hot = self._one_hot(labels)
        return self.decoder(z if one_hot is None else [z, one_hot], training=training)

    def encode(self, images, labels=None):
        """The posterior q(z | x) (q(z | x, y) with labels) of images in [0, 1], [batch, H, W, C]:
        (mean, log_var), float32.

        Raises:
            ValueError: for images of another shape, or (when run eagerly) outside [0, 1]; for
                missing or bad labels of a class-conditional model, or labels for another model.
        """
        images = checked_input(images, "images", (None, *self.image_shape), unit_interval=True)
        return self._encoded(images, checked_labels(labels, self.classes, tf.shape(images)[0]))

    def decode_logits(self, z, labels=None):
        """Per-pixel logits [batch, H, W, C], float32, of latents z [batch, latent_dim] (and labels)."""
        z = checked_input(z, "z", (None, self.latent_dim))
        return ops.cast(self._logits(z, checked_labels(labels, self.classes, tf.shape(z)[0])), "float32")

    def decode(self, z, labels=None):
        """Images in [0, 1], [batch, H, W, C], decoded from latents z [batch, latent_dim] (and labels)."""
        return ops.sigmoid(self.decode_logits(z, labels))

    def sample(self, n, seed=None, labels=None, temperature=1.0):
        """n images decoded from draws of the prior: N(0, I), the class Gaussians of `labels` (one class
        index for all, or n of them), or the VampPrior's mixture.

        The same `seed` (and labels) gives the same images here and from the exported decoder's
        `sample` signature, on every machine: stateless Philox draws, eps from the key [seed, 0] and
        the mixture's components from [seed, 1]. Without a seed, one is drawn from NumPy's global
        generator, which `keras.utils.set_random_seed` seeds.

        Args:
            temperature: Scales the prior's standard deviations (of each class Gaussian, of each
                mixture component): below 1, samples typical of the prior's centre, e.g. clearer
                members of the asked class.

        Raises:
            ValueError: if `n` is not a positive whole number, for a temperature that is not positive,
                or for bad labels (see `encode`).
        """
        if isinstance(n, (int, np.integer)) and (isinstance(n, bool) or n < 1):
            raise ValueError(f"n must be a whole number of images, at least 1; got {n!r}.")
        if isinstance(temperature, (int, float)) and not temperature > 0:
            raise ValueError(f"temperature must be positive. Received: temperature={temperature!r}.")
        if seed is None:
            seed = int(np.random.randint(2**31))
        labels = checked_labels(labels, self.classes, n)
        key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        z = tf.random.stateless_normal(tf.stack([n, self.latent_dim]), key, alg=RANDOM_ALGORITHM)
        if not (isinstance(temperature, (int, float)) and temperature == 1):
            z = tf.cast(temperature, tf.float32) * z
        if self.prior == "class":
            z = self.class_prior.draw(z, labels)
        elif self.prior == "vamp":
            means, log_vars = self._components()
            key = tf.stack([tf.cast(seed, tf.int64), tf.constant(COMPONENT_STREAM, tf.int64)])
            chosen = tf.random.stateless_uniform(tf.reshape(n, [1]), key, 0, self.pseudo_inputs,
                                                 tf.int32, alg=RANDOM_ALGORITHM)
            z = tf.gather(means, chosen) + tf.exp(0.5 * tf.gather(log_vars, chosen)) * z
        return ops.sigmoid(ops.cast(self._logits(z, labels), "float32"))

    def reconstruct(self, images, labels=None):
        """The decoding of the posterior mean of images in [0, 1] (and labels): deterministic, in [0, 1]."""
        images = checked_input(images, "images", (None, *self.image_shape), unit_interval=True)
        labels = checked_labels(labels, self.classes, tf.shape(images)[0])
        return ops.sigmoid(ops.cast(self._logits(self._encoded(images, labels)[0], labels), "float32"))

    def interpolate(self, images_a, images_b, steps, labels=None):
        """Images decoded at `steps` evenly spaced points from each image's posterior mean to its partner's.

        Args:
            images_a, images_b: Images in [0, 1], [batch, H, W, C], the same batch size.
            steps: Points per pair, at least 2 (both ends included).
            labels: For a class-conditional model, the class of every image (and of the decodings).

        Returns:
            [batch, steps, H, W, C]: step 0 decodes the mean of `images_a`, the last that of `images_b`.

        Raises:
            ValueError: for fewer than 2 steps, or batches of different sizes (checked when known).
        """
        if isinstance(steps, (int, np.integer)) and (isinstance(steps, bool) or steps < 2):
            raise ValueError(f"steps must be a whole number, at least 2; got {steps!r}.")
        mean_a, mean_b = self.encode(images_a, labels)[0], self.encode(images_b, labels)[0]
        check_same_batch({"images_a": mean_a, "images_b": mean_b})
        weights = tf.linspace(0.0, 1.0, steps)[None, :, None]
        z = (1.0 - weights) * mean_a[:, None] + weights * mean_b[:, None]
        if labels is not None:  # the labels of each pair, for each of its steps
            labels = tf.repeat(tf.broadcast_to(tf.cast(labels, tf.int32), tf.shape(mean_a)[:1]), steps)
        images = self.decode(tf.reshape(z, [-1, self.latent_dim]), labels)
        return tf.reshape(images, tf.concat([tf.shape(z)[:2], self.image_shape], 0))

    def analogy(self, images_a, images_b, images_c, labels=None):
        """Completes "a is to b as c is to ?": decodes mean(c) + mean(b) - mean(a) of the posteriors.

        Args:
            images_a, images_b, images_c: Images in [0, 1], [batch, H, W, C], the same batch size.
            labels: For a class-conditional model, the class of every image (and of the decoding).

        Raises:
            ValueError: for batches of different sizes (checked when known).
        """
        means = {name: self.encode(images, labels)[0] for name, images in
                 (("images_a", images_a), ("images_b", images_b), ("images_c", images_c))}
        check_same_batch(means)
        return self.decode(means["images_c"] + means["images_b"] - means["images_a"], labels)

    def _components(self, training=False):
        """(means, log_vars) [M, latent_dim] of the VampPrior's components q(z | u_m)."""
        return self._encoded(self.vamp_prior.pseudo_inputs(), None, training)

    def _log_prior(self, z, labels, training=False):
        if self.prior == "class":
            return self.class_prior.log_density(z, labels)
        if self.prior == "vamp":
            return priors.log_mixture(z, *self._components(training))
        return priors.log_standard_normal(z)

    def log_prior(self, z, labels=None):
        """log p(z) (log p(z | y) with labels) in nats, float32 [batch], of latents z [batch, latent_dim].

        Raises:
            ValueError: for latents of another shape, or bad labels (see `encode`).
        """
        z = checked_input(z, "z", (None, self.latent_dim))
        return self._log_prior(z, checked_labels(labels, self.classes, tf.shape(z)[0]))
