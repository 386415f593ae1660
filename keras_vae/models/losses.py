"""Per-example loss terms, in nats per image, always computed in float32.

Each function returns one value per example; reducing them (over the global batch, across replicas)
is the caller's job, because only the caller knows how the batch was split.
"""

from keras import ops


def _flat(x):
    x = ops.cast(x, "float32")
    return ops.reshape(x, (ops.shape(x)[0], -1))


def kl_divergence(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) in closed form, summed over latent dimensions."""
    mean = ops.cast(mean, "float32")
    log_var = ops.cast(log_var, "float32")
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mean) - 1.0 - log_var, axis=-1)


def bernoulli_nll(images, logits):
    """-log p(x | logits) under independent Bernoulli pixels, summed over pixels.

    Uses max(l, 0) - l * x + log(1 + exp(-|l|)), which is finite for every finite logit (no log(0)).
    Pixels in (0, 1) give the usual continuous binary cross-entropy.
    """
    x, logits = _flat(images), _flat(logits)
    return ops.sum(
        ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits))), axis=-1
    )


def gaussian_sse(images, logits):
    """Squared error between the images and the decoded means sigmoid(logits), summed over pixels.

    This is -log N(x; mean, 0.5 I) less the constant 0.5 * log(pi) per pixel.
    """
    x, logits = _flat(images), _flat(logits)
    return ops.sum(ops.square(x - ops.sigmoid(logits)), axis=-1)


RECONSTRUCTION_LOSSES = {"bernoulli": bernoulli_nll, "gaussian": gaussian_sse}
