"""The priors p(z) a VAE can learn against, and the Gaussian densities they are made of.

`normal`: N(0, I), today's prior, with no weights. `class`: a learned Gaussian per class,
p(z | y) = N(mean_y, diag exp(log_var_y)), for class-conditional models. `vamp`: the VampPrior of
Tomczak and Welling (2018), p(z) = 1/M sum_m q(z | u_m), a mixture of the encoder's posteriors of M
learned pseudo-inputs u_m. Every density here is in nats, summed over the latent dimensions and
computed in float32.
"""

import math

import keras
import tensorflow as tf
from keras import ops

from keras_vae.errors import UserError

PRIORS = ("normal", "class", "vamp")
DEFAULT_PSEUDO_INPUTS = 500  # M of Tomczak and Welling's MNIST experiments
LOG_2PI = math.log(2.0 * math.pi)
# Pseudo-inputs start as pictures of about this grey level: sigmoid(free variables) with the variables
# drawn around logit(PSEUDO_INPUT_MEAN), as Tomczak and Welling initialise theirs (pixels about 0.05).
PSEUDO_INPUT_MEAN = 0.05
PSEUDO_INPUT_LOGIT_STDDEV = 0.2
# `VampPrior.assign_images` squeezes pixels into [margin, 1 - margin]: a pixel of exactly 0 or 1 would
# need an infinite free variable, whose gradient through the sigmoid is zero.
PSEUDO_INPUT_MARGIN = 0.05


def log_normal(z, mean, log_var):
    """log N(z; mean, diag exp(log_var)), summed over the last axis; the arguments broadcast."""
    z, mean, log_var = (ops.cast(t, "float32") for t in (z, mean, log_var))
    return -0.5 * ops.sum(ops.square(z - mean) * ops.exp(-log_var) + log_var + LOG_2PI, axis=-1)


def log_standard_normal(z):
    """log N(z; 0, I), summed over the last axis."""
    z = ops.cast(z, "float32")
    return -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)


def gaussian_kl(mean, log_var, prior_mean, prior_log_var):
    """KL(N(mean, exp(log_var)) || N(prior_mean, exp(prior_log_var))) in closed form, summed over the
    last axis; with a prior of zeros it is `keras_vae.models.losses.kl_divergence`."""
    mean, log_var, prior_mean, prior_log_var = (
        ops.cast(t, "float32") for t in (mean, log_var, prior_mean, prior_log_var))
    ratio = (ops.exp(log_var) + ops.square(mean - prior_mean)) * ops.exp(-prior_log_var)
    return 0.5 * ops.sum(prior_log_var - log_var + ratio - 1.0, axis=-1)


def log_mixture(z, means, log_vars):
    """log (1/M sum_m N(z; means_m, diag exp(log_vars_m))) for z [..., D] and M components [M, D].

    The squared distances to all components come from three matrix products (z^2 / var, z * mean /
    var and mean^2 / var summed over D) instead of a [n, M, D] difference, so M = 500 components
    against a batch of K importance samples stays cheap in time and memory. Returns [...].
    """
    z, means, log_vars = (ops.cast(t, "float32") for t in (z, means, log_vars))
    flat = ops.reshape(z, (-1, ops.shape(z)[-1]))
    precision = ops.exp(-log_vars)
    squared = (ops.matmul(ops.square(flat), ops.transpose(precision))
               - 2.0 * ops.matmul(flat, ops.transpose(means * precision))
               + ops.sum(ops.square(means) * precision, axis=-1)[None, :])
    dims = ops.cast(ops.shape(means)[-1], "float32")
    components = -0.5 * (squared + ops.sum(log_vars, axis=-1)[None, :] + dims * LOG_2PI)
    count = ops.cast(ops.shape(means)[0], "float32")
    log_density = tf.reduce_logsumexp(components, axis=-1) - ops.log(count)
    return ops.reshape(log_density, ops.shape(z)[:-1])


def check_prior(prior, classes, pseudo_inputs):
    """The prior and its number of pseudo-inputs, resolved: prior None means "class" for a
    class-conditional model (`classes` not None), else "normal"; pseudo_inputs None means
    DEFAULT_PSEUDO_INPUTS for a VampPrior.

    Returns:
        (prior, pseudo_inputs), pseudo_inputs None unless the prior is "vamp".

    Raises:
        UserError: for an unknown prior, or one that does not go with `classes` / `pseudo_inputs`.
    """
    if prior is None:
        prior = "normal" if classes is None else "class"
    if prior not in PRIORS:
        raise UserError(f"prior must be one of {', '.join(PRIORS)}. Received: prior={prior!r}.")
    if prior == "class" and classes is None:
        raise UserError("prior='class' learns one Gaussian per class, so it needs the classes. "
                        "Received: prior='class' with classes=None; pass `classes`, or use prior='normal'.")
    if prior == "vamp" and classes is not None:
        raise UserError("prior='vamp' is not supported for a class-conditional model. Received: "
                        f"prior='vamp' with classes of {len(classes)} classes; leave out `classes`, "
                        "or use prior='class'.")
    if prior != "vamp":
        if pseudo_inputs is not None:
            raise UserError(f"`pseudo_inputs` counts the VampPrior's pseudo-inputs. Received: "
                            f"pseudo_inputs={pseudo_inputs!r} with prior={prior!r}; use prior='vamp'.")
        return prior, None
    if pseudo_inputs is None:
        return prior, DEFAULT_PSEUDO_INPUTS
    if isinstance(pseudo_inputs, bool) or not isinstance(pseudo_inputs, int) or pseudo_inputs < 1:
        raise UserError(f"pseudo_inputs must be a whole number, at least 1. Received: "
                        f"pseudo_inputs={pseudo_inputs!r}.")
    return prior, pseudo_inputs


@keras.saving.register_keras_serializable(package="keras_vae")
class ClassPrior(keras.layers.Layer):
    """A learned Gaussian per class: p(z | y) = N(mean[y], diag exp(log_var[y])).

    Both tables start at zero, so every class starts from N(0, I) and only training moves them
    apart. Float32 whatever the global policy: the KL and the log-densities need the precision.

    Args:
        classes: Number of classes.
        latent_dim: Dimensions of z.
    """

    def __init__(self, classes, latent_dim, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.classes, self.latent_dim = classes, latent_dim
        self.mean = self.add_weight(shape=(classes, latent_dim), initializer="zeros", name="mean")
        self.log_var = self.add_weight(shape=(classes, latent_dim), initializer="zeros", name="log_var")
        self.built = True

    def parameters(self, labels):
        """(mean, log_var) [..., latent_dim] of the classes `labels` (integers, any shape)."""
        return ops.take(self.mean, labels, axis=0), ops.take(self.log_var, labels, axis=0)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="keras_vae")
class VampPrior(keras.layers.Layer):
    """The M learned pseudo-inputs u_m of a VampPrior, as pictures in [0, 1]: u = sigmoid(w).

    The VAE encodes them with its own encoder to get the mixture's components q(z | u_m).

    Args:
        count: M, the number of pseudo-inputs.
        image_shape: (height, width, channels) of the pictures.
        seed: Seed of the free variables' initial draw (the VAE passes its own seed + 1: Keras draws
            an integer seed s from the key [s, 0], the key of the sampling layer's first draw).
    """

    def __init__(self, count, image_shape, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.count, self.image_shape, self.seed = count, tuple(image_shape), seed
        mean = math.log(PSEUDO_INPUT_MEAN / (1.0 - PSEUDO_INPUT_MEAN))
        self.logits = self.add_weight(
            shape=(count, *self.image_shape), name="logits",
            initializer=keras.initializers.RandomNormal(mean, PSEUDO_INPUT_LOGIT_STDDEV, seed=seed))
        self.built = True

    def pseudo_inputs(self):
        """The pseudo-inputs [M, H, W, C], float32 in (0, 1)."""
        return ops.sigmoid(self.logits)

    def assign_images(self, images):
        """Sets the pseudo-inputs to `images` [M, H, W, C] in [0, 1], squeezed into [0.05, 0.95].

        Raises:
            ValueError: for images of another shape.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        if tuple(images.shape) != tuple(self.logits.shape):
            raise ValueError(f"images must have shape {tuple(self.logits.shape)} (the {self.count} "
                             f"pseudo-inputs); got {tuple(images.shape)}.")
        pixels = PSEUDO_INPUT_MARGIN + (1.0 - 2.0 * PSEUDO_INPUT_MARGIN) * images
        self.logits.assign(tf.math.log(pixels) - tf.math.log1p(-pixels))

    def get_config(self):
        return {**super().get_config(), "count": self.count, "image_shape": self.image_shape,
                "seed": self.seed}
