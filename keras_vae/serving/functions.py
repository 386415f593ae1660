"""The serving functions of the exports, built from the table in `keras_vae.serving.signatures`.

TensorFlow Serving feeds request tensors to the graph without checking them against the signature's
shapes, and its JSON parser accepts NaN and Infinity. So every function checks its inputs itself, in
the graph, and fails with an InvalidArgument error that says what was wrong. The signatures still
declare the full shapes ([batch, latent_dim], [batch, H, W, C]), which clients and `saved_model_cli`
read; fed past them as the server feeds, the checks run (tests/test_export.py shows it), and only a
tensor of the wrong rank for `z` is stopped earlier, by TensorFlow's own "is not compatible with
expected shape [?, latent_dim]".
"""

import numpy as np
import tensorflow as tf

from keras_vae.images import encode_png, tile_images
from keras_vae.serving import signatures as table


def _shape_text(shape):
    return "[" + ", ".join("batch" if size is None else str(size) for size in shape) + "]"


def checked(tensor, name, shape, unit_interval=False):
    """Asserts in the graph that `tensor` has `shape` (None: any size) and finite values.

    Args:
        tensor: The input tensor.
        name: The input's name, for the messages.
        shape: The expected shape; None matches any size.
        unit_interval: Also require every value to lie in [0, 1].

    Returns:
        `tensor`, after the checks, with its static shape set to `shape`.
    """
    actual = tf.shape(tensor)
    # Padding makes the element-wise comparison well defined whatever the actual rank is.
    padded = tf.concat([actual, tf.zeros([len(shape)], tf.int32)], 0)[: len(shape)]
    matches = tf.equal(tf.size(actual), len(shape))
    for index, size in enumerate(shape):
        if size is not None:
            matches = tf.logical_and(matches, tf.equal(padded[index], size))
    shape_check = tf.debugging.Assert(
        matches, [f"{name} must have shape {_shape_text(shape)}; got shape", actual], summarize=8
    )
    with tf.control_dependencies([shape_check]):
        tensor = tf.debugging.assert_all_finite(tensor, f"{name} must not contain NaN or infinite values")
    if unit_interval:
        in_range = tf.reduce_all(tf.logical_and(tensor >= 0.0, tensor <= 1.0))
        range_check = tf.debugging.Assert(
            in_range, [f"{name} must lie in [0, 1]; got values from", tf.reduce_min(tensor), "to",
                       tf.reduce_max(tensor)]
        )
        with tf.control_dependencies([range_check]):
            tensor = tf.identity(tensor)
    return tf.ensure_shape(tensor, shape)


def checked_scalar(tensor, name):
    """Asserts in the graph that `tensor` is a scalar, as its signature declares; returns it as one.

    The declared shape makes tf.rank and tf.shape constants, hence the raw ops, computed when the graph
    runs. Ops that take `tensor` as a scalar (a shape, a stack) would fail first with TensorFlow's own
    message, so the value is read in a way that cannot fail (its first element, 0 when it has none).
    """
    shape_check = tf.debugging.Assert(
        tf.equal(tf.raw_ops.Rank(input=tensor), 0),
        [f"{name} must have shape {_shape_text([])}; got shape", tf.raw_ops.Shape(input=tensor)],
    )
    with tf.control_dependencies([shape_check]):
        return tf.concat([tf.reshape(tensor, [-1]), tf.zeros([1], tensor.dtype)], 0)[0]


class ServingModule(tf.Module):
    """A plain `tf.Module` holding Keras models' variables and the serving functions of one model.

    Args:
        models: The Keras models whose variables the functions use.
        functions: {Signature: (function, {input name: example array})}. The examples feed the
            warm-up requests and the check of the export.
        latent_dim, image_shape: The sizes the table's shapes name.
    """

    def __init__(self, models, functions, latent_dim, image_shape):
        super().__init__()
        # Track the raw tf.Variables, not the Keras objects: the SavedModel then needs only TensorFlow.
        self.model_variables = [v.value for model in models for v in model.variables]
        self.functions = {
            signature.name: tf.function(function, input_signature=[
                tf.TensorSpec(tensor.dims(latent_dim, image_shape), tensor.dtype, name=tensor.name)
                for tensor in signature.inputs])
            for signature, (function, _) in functions.items()}
        self.examples = {signature.name: example for signature, (_, example) in functions.items()}


def decoder_module(vae, rng):
    """Wraps a VAE's decoder: the decoder signatures of the table; `rng` draws the example inputs.

    `sample` draws n images from z ~ N(0, I) (`VAE.sample`, the same for the same seed); `sample_png`
    tiles them into one PNG grid (`keras_vae.images.tile_images`).
    """
    latent_dim = vae.latent_dim

    def logits(z):
        return {table.LOGITS.output(): vae.decode_logits(checked(z, "z", [None, latent_dim]))}

    def decode(z):
        return {table.DECODE.output(): vae.decode(checked(z, "z", [None, latent_dim]))}

    def sample(n, seed):
        n, seed = checked_scalar(n, "n"), checked_scalar(seed, "seed")
        n_check = tf.debugging.Assert(tf.logical_and(n >= 1, n <= table.MAX_SAMPLES),
                                      [f"n must be between 1 and {table.MAX_SAMPLES}; got", n])
        with tf.control_dependencies([n_check]):
            n = tf.identity(n)
        return {table.SAMPLE.output(): vae.sample(n, seed)}

    def sample_png(n, seed):
        return {table.SAMPLE_PNG.output(): encode_png(tile_images(sample(n, seed)[table.SAMPLE.output()]))}

    z_example = {"z": rng.standard_normal((3, latent_dim)).astype(np.float32)}
    n_seed_example = {"n": np.int32(3), "seed": np.int64(rng.integers(2**31))}
    return ServingModule([vae.decoder], {
        table.DECODE: (decode, z_example),
        table.LOGITS: (logits, z_example),
        table.SAMPLE: (sample, n_seed_example),
        table.SAMPLE_PNG: (sample_png, n_seed_example),
    }, latent_dim, vae.image_shape)


def encoder_module(vae, rng):
    """Wraps a VAE's encoder, with its decoder for `reconstruct`; `rng` draws the example images."""
    image_shape = [None, *vae.image_shape]

    def encode(images):
        mean, log_var = vae.encode(checked(images, "images", image_shape, unit_interval=True))
        return dict(zip(table.ENCODE.output_names(), (mean, log_var), strict=True))

    def reconstruct(images):
        return {table.RECONSTRUCT.output(): vae.reconstruct(
            checked(images, "images", image_shape, unit_interval=True))}

    example = {"images": rng.random((3, *image_shape[1:])).astype(np.float32)}
    return ServingModule([vae.encoder, vae.decoder], {
        table.ENCODE: (encode, example),
        table.RECONSTRUCT: (reconstruct, example),
    }, vae.latent_dim, vae.image_shape)


MODULES = {"decoder": decoder_module, "encoder": encoder_module}
