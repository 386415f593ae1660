"""Estimates of how well a VAE models data: the ELBO, the importance-weighted NLL, active units.

The estimators take the model as callables (an encoder and a log-likelihood), so they work the same on
exported SavedModels, on Keras models and on toy models whose log p(x) is known in closed form.
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


def samples_per_call():
    """Decoder rows per call for the device that will run them: a GPU's or the CPU's figure."""
    return GPU_SAMPLES_PER_CALL if has_gpu() else SAMPLES_PER_CALL


def decoder_log_likelihood(likelihood, decode_logits):
    """Returns log p(x | z) as a function of (images, z), from a decoder that maps z to logits.

    Args:
        likelihood: "bernoulli" (independent Bernoulli pixels with probabilities sigmoid(logits)) or
            "gaussian" (independent Gaussian pixels, mean sigmoid(logits), variance 0.5: the proper
            density behind the squared-error training loss, so it includes 0.5 * log(pi) per pixel).
        decode_logits: Callable z [n, latent] -> logits [n, ...].
    """
    reconstruction = losses.RECONSTRUCTION_LOSSES[likelihood]
    normaliser = GAUSSIAN_LOG_NORMALISER if likelihood == "gaussian" else 0.0

    def log_likelihood(images, z):
        pixels = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
        return -reconstruction(images, decode_logits(z)) - normaliser * pixels

    return log_likelihood


def importance_estimator(encode, log_likelihood, k, seed=0, samples_per_call=SAMPLES_PER_CALL):
    """Builds a compiled function that evaluates a batch of images.

    The importance-weighted estimate (Burda et al. 2015) is
    log p(x) ~ logsumexp_i [log p(x | z_i) + log p(z_i) - log q(z_i | x)] - log k, z_i ~ q(z | x),
    a lower bound in expectation that tightens as k grows. The k samples are drawn in chunks of
    about `samples_per_call // batch` so each decoder call is one large batch.

    Args:
        encode: Callable images [batch, ...] -> (mean, log_var), each [batch, latent], of q(z | x).
        log_likelihood: Callable (images [n, ...], z [n, latent]) -> log p(x | z) [n].
        k: Number of importance samples per image.
        seed: Seed of the latent draws; the same seed and batches give the same numbers.
        samples_per_call: Decoder rows per call.

    Returns:
        A function images -> dict of float32 tensors: `reconstruction` [batch] (-log p(x | z) at one
        sample z ~ q), `kl` [batch] (KL(q(z | x) || N(0, I)) in closed form), `nll` [batch] (the
        importance-weighted -log p(x)) and `mean` [batch, latent] (the posterior means).
    """
    # Separate streams, so the one-sample ELBO does not change with k.
    elbo_noise, importance_noise = tf.random.Generator.from_seed(seed).split(2)

    def log_weights(images, mean, log_var, count):
        """log p(x | z) + log p(z) - log q(z | x) for `count` samples per image: [count, batch]."""
        eps = importance_noise.normal(tf.concat([[count], tf.shape(mean)], axis=0))
        z = mean + tf.exp(0.5 * log_var) * eps
        # The log(2 pi) terms of prior and posterior cancel; writing q through eps keeps it exact.
        log_prior_ratio = 0.5 * tf.reduce_sum(tf.square(eps) - tf.square(z) + log_var, axis=-1)
        # Row r of the flattened samples belongs to image r % batch, as does row r of the tiled images.
        tiling = tf.concat([[count], tf.ones([tf.rank(images) - 1], tf.int32)], axis=0)
        flat_z = tf.reshape(z, [-1, tf.shape(mean)[1]])
        log_px_z = tf.reshape(log_likelihood(tf.tile(images, tiling), flat_z), [count, -1])
        return log_px_z + log_prior_ratio

    @tf.function(reduce_retracing=True)
    def estimate(images):
        images = tf.cast(images, tf.float32)
        mean, log_var = encode(images)
        mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
        z = mean + tf.exp(0.5 * log_var) * elbo_noise.normal(tf.shape(mean))
        reconstruction = -log_likelihood(images, z)
        chunk = tf.clip_by_value(samples_per_call // tf.shape(mean)[0], 1, k)
        chunks = (k + chunk - 1) // chunk
        chunk_sums = tf.TensorArray(tf.float32, size=chunks)
        for index in tf.range(chunks):
            count = tf.minimum(chunk, k - index * chunk)
            weights = log_weights(images, mean, log_var, count)
            chunk_sums = chunk_sums.write(index, tf.reduce_logsumexp(weights, axis=0))
        log_px = tf.reduce_logsumexp(chunk_sums.stack(), axis=0) - math.log(k)
        return {"reconstruction": reconstruction, "kl": losses.kl_divergence(mean, log_var),
                "nll": -log_px, "mean": mean}

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
