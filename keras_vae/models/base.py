"""The contract of a trained VAE, in memory or deployed: what pictures, evaluation and serving call.

`keras_vae.VAE` (the Keras model) and `keras_vae.ExportedVAE` (the exported SavedModels, loaded as
deployed) both follow it, with the same argument and return types, so anything written against it
takes either.
"""

from typing import Protocol, runtime_checkable

import tensorflow as tf


@runtime_checkable
class Autoencoder(Protocol):
    """A VAE over images in [0, 1] of shape [batch, *image_shape] and latents [batch, latent_dim].

    Every method takes array-likes (NumPy arrays or tensors) and returns float32 `tf.Tensor`s. A
    class-conditional model (whose `classes` names its classes; `classes` is None or absent otherwise)
    takes `labels` too: class indices, one integer for every example or one per example. A
    `keras_vae.VAE` also has `log_prior(z, labels=None)`, log p(z) in nats.
    """

    image_shape: tuple
    latent_dim: int
    likelihood: str  # "bernoulli" or "gaussian" (keras_vae.models.losses)

    def encode(self, images, labels=None) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean, log_var) of q(z | x) (of q(z | x, y) with labels), each [batch, latent_dim]."""

    def decode_logits(self, z, labels=None) -> tf.Tensor:
        """Per-pixel logits [batch, *image_shape] of latents z."""

    def decode(self, z, labels=None) -> tf.Tensor:
        """Images in [0, 1], sigmoid of the logits."""

    def sample(self, n, seed=None, labels=None) -> tf.Tensor:
        """n images decoded from prior draws; a seed gives the exported `sample` signature's images."""

    def reconstruct(self, images, labels=None) -> tf.Tensor:
        """The decoding of the posterior mean."""
