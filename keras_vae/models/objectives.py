"""The training objectives: the ELBO and the importance-weighted bound (IWAE), per example, in float32.

Both are lower bounds on log p(x); `loss` is the negative of the one trained. Burda et al. (2015):
IWAE_K = E log (1/K sum_k p(x, z_k) / q(z_k | x)) with z_k ~ q(z | x) grows with K towards log p(x),
and IWAE_1 is the ELBO. As everywhere in `keras_vae.models`, reducing the per-example values over a
batch is the caller's job.
"""

import tensorflow as tf
from keras import ops

from keras_vae.errors import UserError
from keras_vae.models.priors import LOG_2PI

OBJECTIVES = ("elbo", "iwae")


def check_objective(objective, iw_samples):
    """Raises a `UserError` for an unknown objective, or importance samples it does not take.

    Returns:
        (objective, iw_samples), as given.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}. "
                        f"Received: objective={objective!r}.")
    if isinstance(iw_samples, bool) or not isinstance(iw_samples, int) or iw_samples < 1:
        raise UserError(f"iw_samples must be a whole number, at least 1. "
                        f"Received: iw_samples={iw_samples!r}.")
    if objective == "elbo" and iw_samples != 1:
        raise UserError("`iw_samples` counts the importance samples of objective='iwae'; the ELBO takes "
                        f"one sample. Received: iw_samples={iw_samples} with objective='elbo'; use "
                        "objective='iwae'.")
    return objective, iw_samples


def bound_name(objective, iw_samples, closed_form_kl):
    """What a model's `loss` is the negative of, as its metrics report it."""
    if objective == "iwae":
        return f"IWAE bound, K={iw_samples} importance samples"
    return "ELBO, KL in closed form" if closed_form_kl else "ELBO, KL as a one-sample Monte Carlo estimate"


def log_posterior(eps, log_var):
    """log q(z | x) of z = mean + exp(log_var / 2) * eps, summed over the last axis.

    Written through the noise eps, the density needs no division by the standard deviation, and is
    exact for the z the noise made.
    """
    return -0.5 * ops.sum(ops.square(eps) + ops.cast(log_var, "float32") + LOG_2PI, axis=-1)


def importance_weighted(log_likelihood, log_prior, log_posterior, kl_weight=1.0):
    """The per-example IWAE loss and its parts, from K samples z_k ~ q(z | x) of each example.

    Args:
        log_likelihood: log p(x | z_k), [K, batch].
        log_prior: log p(z_k), [K, batch].
        log_posterior: log q(z_k | x), [K, batch].
        kl_weight: Weight of log p(z) - log q(z | x) in each log-weight (beta, or less during a KL
            warm-up); 1 gives the bound.

    Returns:
        (loss, reconstruction, kl), each [batch]: loss = -log (1/K sum_k w_k) with
        log w_k = log p(x | z_k) + kl_weight (log p(z_k) - log q(z_k | x)), through a logsumexp; the
        reconstruction -log p(x | z_k) and the Monte Carlo KL log q(z_k | x) - log p(z_k), each
        averaged over the K samples (their sum is the negative ELBO, estimated with K samples).
        With K = 1 the loss is reconstruction + kl_weight * kl exactly.
    """
    log_likelihood, log_prior, log_posterior = (
        ops.cast(t, "float32") for t in (log_likelihood, log_prior, log_posterior))
    log_ratio = log_prior - log_posterior
    log_weights = log_likelihood + ops.cast(kl_weight, "float32") * log_ratio
    samples = ops.cast(ops.shape(log_weights)[0], "float32")
    # TensorFlow's logsumexp subtracts the largest log-weight first, so a single one comes back exactly.
    loss = ops.log(samples) - tf.reduce_logsumexp(log_weights, axis=0)
    return loss, -ops.mean(log_likelihood, axis=0), -ops.mean(log_ratio, axis=0)
