"""Stochastic binarization of grey-level images, as in the published binarized-MNIST results.

Each pixel becomes 1 with probability equal to its grey level. The draw of an image is a stateless
function of the image's index in its split (and, for `dynamic`, of a seed and a draw number), never
of the batch it arrives in or of the order, so results repeat exactly and any epoch can be replayed.
The function is plain TensorFlow and works eagerly, in a `tf.function` and in a `tf.data` map:

    dataset.map(lambda index: binarize(tf.gather(images, index), index, "dynamic", seed, epoch))
"""

import tensorflow as tf

MODES = ("none", "static", "dynamic")
# Dynamic draws fold indices into (seed, draw) with seed, draw >= 0; the -1 keeps static draws apart.
STATIC_SEED = (0, -1)


def binarize(images, indices, mode, seed=0, draw=0):
    """Replaces every pixel by a Bernoulli draw with the pixel's value as its probability of being 1.

    Args:
        images: Float tensor [batch, ...] with values in [0, 1].
        indices: Integer tensor [batch]: each image's position in its split, which names the image.
        mode: "none": return `images` unchanged (grey levels). "static": one fixed draw per image, the
            same in every run, epoch and seed (a fixed binarized data set). "dynamic": a fresh draw
            for each (`seed`, `draw`), e.g. `draw` = the epoch, so training sees a new binary image
            every time it uses one.
        seed: Non-negative integer (or integer scalar tensor); read by "dynamic" only.
        draw: Non-negative integer (or integer scalar tensor); read by "dynamic" only.

    Returns:
        A tensor of the shape and dtype of `images`, holding 0s and 1s (or `images` for "none").

    Raises:
        ValueError: for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if mode == "none":
        return images
    images = tf.convert_to_tensor(images)
    if mode == "static":
        base = tf.constant(STATIC_SEED, tf.int64)
    else:
        base = tf.stack([tf.cast(seed, tf.int64), tf.cast(draw, tf.int64)])

    def draw_one(arguments):
        image, index = arguments
        image_seed = tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))
        uniform = tf.random.stateless_uniform(tf.shape(image), image_seed, dtype=image.dtype)
        return tf.cast(uniform < image, image.dtype)

    # A loop over the batch: stateless ops take one seed per call, and each image needs its own.
    return tf.map_fn(draw_one, (images, indices), fn_output_signature=images.dtype)
