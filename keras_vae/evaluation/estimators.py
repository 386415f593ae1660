"""Estimates of how well a VAE models data: the ELBO, the importance-weighted NLL, active units.

The estimators take the model as callables (an encoder, a log-likelihood and optionally the prior's
log-density), so they work the same on exported SavedModels, on Keras models and on toy models whose
log p(x) is known in closed form. For a class-conditional model every callable also takes the labels,
and the estimates are of log p(x | y).
"""

import math

import numpy as np
import tensorflow as tf

from keras_vae.devices import has_gpu
from keras_vae.models import losses

# Decoder rows (latent samples times images) per call: on a CPU, calls of this size ran fastest (larger
# ones fall out of the caches, smaller ones add per-call overhead); on a GPU a larger call keeps the
# device busy while the conv decoder's activations stay near 1 GB. docs/performance.md has the figures.
SAMPLES_PER_CALL = 2048
GPU_SAMPLES_PER_CALL = 8192
ACTIVE_UNIT_THRESHOLD = 0.01
# log N(x; mu, 0.5) = -(x - mu)^2 - 0.5 * log(pi) per pixel; the training loss drops the constant.
GAUSSIAN_LOG_NORMALISER = 0.5 * math.log(math.pi)
LOG_2PI = math.log(2.0 * math.pi)


def samples_per_call():
    """Decoder rows per call for the device that will run them: a GPU's or the CPU's figure."""
    return GPU_SAMPLES_PER_CALL if has_gpu() else SAMPLES_PER_CALL


def decoder_log_likelihood(likelihood, decode_logits):
    """Returns log p(x | z) as a function of (images, z), from a decoder that maps z to logits.

    Args:
        likelihood: "bernoulli" (independent Bernoulli pixels with probabilities sigmoid(logits)) or
            "gaussian" (independent Gaussian pixels, mean sigmoid(logits), variance 0.5: the proper
            density behind the squared-error training loss, so it includes 0.5 * log(pi) per pixel).
        decode_logits: Callable z [n, latent] -> logits [n, ...]; (z, labels [n]) -> logits for a
            class-conditional model.

    Returns:
        A function (images, z, labels=None) -> log p(x | z) (log p(x | z, y) with labels) [n].
    """
    reconstruction = losses.RECONSTRUCTION_LOSSES[likelihood]
    normaliser = GAUSSIAN_LOG_NORMALISER if likelihood == "gaussian" else 0.0

    def log_likelihood(images, z, labels=None):
        pixels = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
        logits = decode_logits(z) if labels is None else decode_logits(z, labels)
        return -reconstruction(images, logits) - normaliser * pixels

    return log_likelihood


def _log_posterior(eps, log_var):
    """log q(z | x) of z = mean + exp(log_var / 2) * eps, summed over the last axis (exact through eps)."""
    return -0.5 * tf.reduce_sum(tf.square(eps) + log_var + LOG_2PI, axis=-1)


def _with_labels(function, labels):
    """`function` with `labels` as its last argument when there are labels (a conditional model)."""
    return function if labels is None else lambda *arguments: function(*arguments, labels)


def importance_estimator(encode, log_likelihood, k, seed=0, samples_per_call=SAMPLES_PER_CALL,
                         log_prior=None, closed_form_kl=None):
    """Builds a compiled function that evaluates a batch of images (and labels).

    The importance-weighted estimate (Burda et al. 2015) is
    log p(x) ~ logsumexp_i [log p(x | z_i) + log p(z_i) - log q(z_i | x)] - log k, z_i ~ q(z | x),
    a lower bound in expectation that tightens as k grows. The k samples are drawn in chunks of
    about `samples_per_call // batch` so each decoder call is one large batch. With labels, every
    density is conditioned on them, and the estimate is of log p(x | y).

    Args:
        encode: Callable images [batch, ...] -> (mean, log_var), each [batch, latent], of q(z | x);
            (images, labels [batch]) -> q(z | x, y) for a class-conditional model.
        log_likelihood: Callable (images [n, ...], z [n, latent]) -> log p(x | z) [n]; (images, z,
            labels [n]) for a class-conditional model.
        k: Number of importance samples per image.
        seed: Seed of the latent draws; the same seed and batches give the same numbers.
        samples_per_call: Decoder rows per call.
        log_prior: Callable z [n, latent] -> log p(z) [n] ((z, labels [n]) -> log p(z | y)), e.g. a
            model's `log_prior`; None: the prior is N(0, I), whose density is computed here.
        closed_form_kl: Report `kl` in closed form, KL(q(z | x) || N(0, I)), for a prior known to be
            N(0, I) whose density `log_prior` gives; None: only when `log_prior` is None.

    Returns:
        A function (images, labels=None) -> dict of float32 tensors: `reconstruction` [batch]
        (-log p(x | z) at one sample z ~ q), `kl` [batch] (KL(q(z | x) || N(0, I)) in closed form;
        with `log_prior` and not `closed_form_kl`, its one-sample Monte Carlo estimate
        log q(z | x) - log p(z) at that z),
        `nll` [batch] (the importance-weighted -log p(x)) and `mean` [batch, latent] (the posterior
        means).
    """
    if closed_form_kl is None:
        closed_form_kl = log_prior is None
    # Separate streams, so the one-sample ELBO does not change with k.
    elbo_noise, importance_noise = tf.random.Generator.from_seed(seed).split(2)

    def log_weights(images, labels, mean, log_var, count):
        """log p(x | z) + log p(z) - log q(z | x) for `count` samples per image: [count, batch]."""
        eps = importance_noise.normal(tf.concat([[count], tf.shape(mean)], axis=0))
        z = mean + tf.exp(0.5 * log_var) * eps
        # Row r of the flattened samples belongs to image r % batch, as do row r of the tiled images
        # and of the tiled labels.
        tiling = tf.concat([[count], tf.ones([tf.rank(images) - 1], tf.int32)], axis=0)
        flat_z = tf.reshape(z, [-1, tf.shape(mean)[1]])
        flat_labels = None if labels is None else tf.tile(labels, [count])
        log_px_z = tf.reshape(_with_labels(log_likelihood, flat_labels)(tf.tile(images, tiling), flat_z),
                              [count, -1])
        if log_prior is None:
            # The log(2 pi) terms of prior and posterior cancel; writing q through eps keeps it exact.
            return log_px_z + 0.5 * tf.reduce_sum(tf.square(eps) - tf.square(z) + log_var, axis=-1)
        log_pz = tf.reshape(tf.cast(_with_labels(log_prior, flat_labels)(flat_z), tf.float32), [count, -1])
        return log_px_z + log_pz - _log_posterior(eps, log_var)

    @tf.function(reduce_retracing=True)
    def estimate(images, labels=None):
        images = tf.cast(images, tf.float32)
        mean, log_var = _with_labels(encode, labels)(images)
        mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
        eps = elbo_noise.normal(tf.shape(mean))
        z = mean + tf.exp(0.5 * log_var) * eps
        reconstruction = -_with_labels(log_likelihood, labels)(images, z)
        if closed_form_kl:
            kl = losses.kl_divergence(mean, log_var)
        else:
            kl = _log_posterior(eps, log_var) - tf.cast(_with_labels(log_prior, labels)(z), tf.float32)
        chunk = tf.clip_by_value(samples_per_call // tf.shape(mean)[0], 1, k)
        chunks = (k + chunk - 1) // chunk
        chunk_sums = tf.TensorArray(tf.float32, size=chunks)
        for index in tf.range(chunks):
            count = tf.minimum(chunk, k - index * chunk)
            weights = log_weights(images, labels, mean, log_var, count)
            chunk_sums = chunk_sums.write(index, tf.reduce_logsumexp(weights, axis=0))
        log_px = tf.reduce_logsumexp(chunk_sums.stack(), axis=0) - math.log(k)
        return {"reconstruction": reconstruction, "kl": kl, "nll": -log_px, "mean": mean}

    return estimate


def active_units(means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Counts the latent units whose posterior mean varies over the data by more than `threshold`.

    Args:
        means: Posterior means [images, latent].

    Returns:
        (count, variances): the number of active units and the variance of each unit's mean.
    """
    variances = np.var(np.asarray(means, np.float64), axis=0)
    return int(np.sum(variances > threshold)), variances


def bits_per_dim(nll, dimensions):
    """Converts a negative log-likelihood in nats per image to bits per pixel (per dimension)."""
    return nll / (dimensions * math.log(2.0))
