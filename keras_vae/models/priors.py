"""The priors p(z) a VAE can learn against, and the Gaussian densities they are made of.

`normal`: N(0, I), today's prior, with no weights. `class`: a learned Gaussian per class with a
full covariance, p(z | y) = N(mean_y, L_y L_y^T), for class-conditional models. `vamp`: the VampPrior of
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


def log_standard_normal(z):
    """log N(z; 0, I), summed over the last axis."""
    z = ops.cast(z, "float32")
    return -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)


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
    """A learned Gaussian per class with a full covariance: p(z | y) = N(mean[y], L[y] L[y]^T).

    L[y], the Cholesky factor, is diag(exp(log_var[y] / 2)) plus the strictly lower triangle of
    tril[y]: log_var are the log-variances the Gaussian would have without correlations, which tril
    adds. The tables `mean`, `log_var` and `tril` hold these parameters divided by STEP_SCALE, so
    that an optimizer's steps (Adam's are about the learning rate, whatever the gradient) move the
    parameters STEP_SCALE times faster than the networks' weights: the prior then keeps up with the
    class aggregates of the posteriors it is fitted to. Both choices decide whether samples at
    temperature 1 show the asked class: the aggregates are correlated, and a diagonal prior, or one
    that lags, puts samples where no posterior of the class goes, which the decoder turns into other
    digits (docs/evaluation.md, "Class-conditional samples"). All tables start at zero, so every
    class starts from N(0, I). Float32 whatever the global policy: the KL and the log-densities need
    the precision.

    Args:
        classes: Number of classes.
        latent_dim: Dimensions of z.
    """

    STEP_SCALE = 10.0

    def __init__(self, classes, latent_dim, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.classes, self.latent_dim = classes, latent_dim
        self.mean = self.add_weight(shape=(classes, latent_dim), initializer="zeros", name="mean")
        self.log_var = self.add_weight(shape=(classes, latent_dim), initializer="zeros", name="log_var")
        self.tril = self.add_weight(shape=(classes, latent_dim, latent_dim), initializer="zeros",
                                    name="tril")
        self.built = True

    def parameters(self, labels):
        """(mean [..., D], log_var [..., D], scale_tril [..., D, D]) of the classes `labels` (integers,
        any shape): the covariance is scale_tril scale_tril^T, and log_var the log of its factor's
        squared diagonal."""
        log_var = self.STEP_SCALE * ops.take(self.log_var, labels, axis=0)
        # set_diag replaces tril's diagonal, so only its strictly lower triangle is used.
        lower = self.STEP_SCALE * tf.linalg.band_part(ops.take(self.tril, labels, axis=0), -1, 0)
        scale = tf.linalg.set_diag(lower, ops.exp(0.5 * log_var))
        return self.STEP_SCALE * ops.take(self.mean, labels, axis=0), log_var, scale

    def _factors(self, labels, like):
        """(mean, log_var, scale_tril) of `labels`, the factor broadcast to the batch of `like` [..., D]
        (also when one label stands for the whole batch), as the triangular solves take it."""
        mean, log_var, scale = self.parameters(labels)
        return mean, log_var, tf.broadcast_to(scale, tf.concat([tf.shape(like), tf.shape(like)[-1:]], 0))

    def assign_parameters(self, mean, log_var, tril=None):
        """Sets the parameters of every class: mean and log_var [classes, D], tril [classes, D, D]
        (its strictly lower triangle is used; None: no correlations)."""
        tril = tf.zeros(self.tril.shape) if tril is None else tril
        for table, value in ((self.mean, mean), (self.log_var, log_var), (self.tril, tril)):
            table.assign(tf.convert_to_tensor(value, tf.float32) / self.STEP_SCALE)

    def log_density(self, z, labels):
        """log p(z | y) [...] of latents z [..., D] and `labels` [...] (or broadcasting to them)."""
        z = ops.cast(z, "float32")
        mean, log_var, scale = self._factors(labels, z)
        # The Mahalanobis distance through L^-1 (z - mean); log |L L^T| = sum of log_var.
        whitened = tf.linalg.triangular_solve(scale, (z - mean)[..., None], lower=True)[..., 0]
        return -0.5 * ops.sum(ops.square(whitened) + log_var + LOG_2PI, axis=-1)

    def kl(self, mean, log_var, labels):
        """KL(N(mean, diag exp(log_var)) || p(z | y)) in closed form [batch], for posteriors [batch, D]:
        (tr(S^-1 diag s) + |L^-1 (mean_y - mean)|^2 - D + log |S| - sum log s) / 2 with S = L L^T."""
        mean, log_var = ops.cast(mean, "float32"), ops.cast(log_var, "float32")
        prior_mean, prior_log_var, scale = self._factors(labels, mean)
        columns = tf.linalg.triangular_solve(scale, tf.linalg.diag(ops.exp(0.5 * log_var)), lower=True)
        offset = tf.linalg.triangular_solve(scale, (prior_mean - mean)[..., None], lower=True)[..., 0]
        return 0.5 * (ops.sum(ops.square(columns), axis=(-2, -1)) + ops.sum(ops.square(offset), axis=-1)
                      + ops.sum(prior_log_var - log_var - 1.0, axis=-1))

    def draw(self, eps, labels):
        """mean[y] + L[y] eps: latents of p(z | y) from standard normal noise eps [..., D]."""
        mean, _, scale = self.parameters(labels)
        return mean + ops.squeeze(ops.matmul(scale, ops.cast(eps, "float32")[..., None]), -1)

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
