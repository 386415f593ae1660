"""The serving signatures of the exported decoder and encoder, with their input checks.

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

from keras_vae import plots

# The largest `n` the `sample` signature accepts, so one request cannot exhaust a server's memory.
MAX_SAMPLES = 10_000


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
    """A plain `tf.Module` holding Keras models' variables and the serving functions.

    Args:
        models: The Keras models whose variables the functions use.
        functions: {signature name: (function, [TensorSpec, ...], {input name: example array})}. The
            examples feed the warm-up requests and the check of the export.
    """

    def __init__(self, models, functions):
        super().__init__()
        # Track the raw tf.Variables, not the Keras objects: the SavedModel then needs only TensorFlow.
        self.model_variables = [v.value for model in models for v in model.variables]
        self.functions = {name: tf.function(fn, input_signature=specs)
                          for name, (fn, specs, _) in functions.items()}
        self.examples = {name: example for name, (_, _, example) in functions.items()}


def decoder_module(vae, rng):
    """Wraps a VAE's decoder; `rng` draws the example latents.

    Signatures: serving_default(z [batch, latent] float32) -> {images: [batch, H, W, C] in [0, 1]};
    logits(z) -> {logits: [batch, H, W, C]}, for exact log-likelihoods (see keras_vae.losses);
    sample(n int32, seed int64) -> {images}: n images from z ~ N(0, I), the same for the same seed;
    sample_png(n, seed) -> {png_bytes}: those images as one PNG grid (keras_vae.plots.tile_images), a
    scalar string whose name ends in `_bytes` so that TensorFlow Serving's REST API sends it base64.
    """
    latent_dim = vae.latent_dim

    def logits(z):
        return {"logits": vae.decode_logits(checked(z, "z", [None, latent_dim]))}

    def serve(z):
        return {"images": vae.decode(checked(z, "z", [None, latent_dim]))}

    def sample(n, seed):
        n, seed = checked_scalar(n, "n"), checked_scalar(seed, "seed")
        n_check = tf.debugging.Assert(
            tf.logical_and(n >= 1, n <= MAX_SAMPLES), [f"n must be between 1 and {MAX_SAMPLES}; got", n]
        )
        with tf.control_dependencies([n_check]):
            n = tf.identity(n)
        return {"images": vae.sample(n, seed)}

    def sample_png(n, seed):
        return {"png_bytes": plots.encode_png(plots.tile_images(sample(n, seed)["images"]))}

    z_spec = [tf.TensorSpec([None, latent_dim], tf.float32, name="z")]
    z_example = {"z": rng.standard_normal((3, latent_dim)).astype(np.float32)}
    n_seed_specs = [tf.TensorSpec([], tf.int32, name="n"), tf.TensorSpec([], tf.int64, name="seed")]
    n_seed_example = {"n": np.int32(3), "seed": np.int64(rng.integers(2**31))}
    return ServingModule([vae.decoder], {
        "serving_default": (serve, z_spec, z_example),
        "logits": (logits, z_spec, z_example),
        "sample": (sample, n_seed_specs, n_seed_example),
        "sample_png": (sample_png, n_seed_specs, n_seed_example),
    })


def encoder_module(vae, rng):
    """Wraps a VAE's encoder, with its decoder for `reconstruct`; `rng` draws the example images.

    Signatures: serving_default(images [batch, H, W, C] in [0, 1]) -> {mean, log_var} [batch, latent];
    reconstruct(images) -> {images}: the decoding of the posterior mean, in [0, 1].
    """
    image_shape = [None, *vae.image_shape]

    def encode(images):
        mean, log_var = vae.encode(checked(images, "images", image_shape, unit_interval=True))
        return {"mean": mean, "log_var": log_var}

    def reconstruct(images):
        return {"images": vae.reconstruct(checked(images, "images", image_shape, unit_interval=True))}

    spec = [tf.TensorSpec(image_shape, tf.float32, name="images")]
    example = {"images": rng.random((3, *image_shape[1:])).astype(np.float32)}
    return ServingModule([vae.encoder, vae.decoder], {
        "serving_default": (encode, spec, example),
        "reconstruct": (reconstruct, spec, example),
    })
