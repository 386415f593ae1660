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
from keras_vae.models.inputs import checked_labels as vae_labels
from keras_vae.serving import signatures as table


def _shape_text(shape):
    return "[" + ", ".join("batch" if size is None else str(size) for size in shape) + "]"


def checked(tensor, name, shape, unit_interval=False):
    """Asserts in the graph that `tensor` has `shape` (None: any size) and, if floats, finite values.

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
        if tensor.dtype.is_floating:
            tensor = tf.debugging.assert_all_finite(tensor, f"{name} must not contain NaN or infinite values")
        else:
            tensor = tf.identity(tensor)
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


def in_range(value, name, low, high):
    """Asserts in the graph that the scalar `value` lies in [low, high]; returns it."""
    check = tf.debugging.Assert(tf.logical_and(value >= low, value <= high),
                                [f"{name} must be between {low} and {high}; got", value])
    with tf.control_dependencies([check]):
        return tf.identity(value)


def same_batch(tensors):
    """Asserts in the graph that the tensors {name: tensor} share their first dimension; returns them.

    Without it, one image would silently pair with a whole batch (broadcasting).
    """
    sizes = [tf.shape(tensor)[0] for tensor in tensors.values()]
    equal = tf.reduce_all(tf.equal(tf.stack(sizes), sizes[0]))
    check = tf.debugging.Assert(equal, [f"{', '.join(tensors)} must have the same batch size; got", *sizes])
    with tf.control_dependencies([check]):
        return [tf.identity(tensor) for tensor in tensors.values()]


def asked_classes(labels, n):
    """Asserts in the graph that a sampler's `labels` are a non-empty vector, and that n images of each
    stay within MAX_SAMPLES; returns them (their range is the model's own check)."""
    labels = checked(labels, "labels", [None])
    count = tf.size(labels)
    check = tf.debugging.Assert(
        tf.logical_and(count >= 1, tf.cast(count, tf.int64) * tf.cast(n, tf.int64) <= table.MAX_SAMPLES),
        [f"labels must name 1 or more classes, and n times their number be at most {table.MAX_SAMPLES}; "
         "got n", n, "and labels", count], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(labels)


def signature_functions(vae):
    """{Signature: its Python function on `vae`}, for every signature of the table that `vae` has.

    Each checks its inputs in the graph, then calls the `keras_vae.VAE` method of the same name, with
    `labels` for a class-conditional model (the class of every example). `sample` draws n images from
    the prior (the same for the same seed); for a class-conditional model, n images of each class in
    `labels`, in that order, each n of them `vae.sample(n, seed, label)`: one class's images are the
    same asked alone or with others. `sample_png` tiles them into one PNG grid
    (`keras_vae.images.tile_images`): near-square, or one row per asked class. `class_names` answers
    the names of `labels` and every class name.
    """
    latent_dim, image_shape = vae.latent_dim, [None, *vae.image_shape]
    conditional = vae.classes is not None

    def latents(z):
        return checked(z, "z", [None, latent_dim])

    def pictures(**named):
        tensors = {key: checked(value, key, image_shape, unit_interval=True) for key, value in named.items()}
        return same_batch(tensors) if len(tensors) > 1 else list(tensors.values())

    def classes_of(labels):
        """The checked labels of a batch: a vector (the range and size are the model's own checks)."""
        return None if labels is None else checked(labels, "labels", [None])

    def sample(n, seed, labels=None):
        n = in_range(checked_scalar(n, "n"), "n", 1, table.MAX_SAMPLES)
        seed = checked_scalar(seed, "seed")
        if labels is None:
            return {table.SAMPLE.output(): vae.sample(n, seed)}
        rows = tf.map_fn(lambda label: vae.sample(n, seed, label), asked_classes(labels, n),
                         fn_output_signature=tf.TensorSpec(image_shape, tf.float32))
        return {table.SAMPLE.output(): tf.reshape(rows, tf.concat([[-1], vae.image_shape], 0))}

    def sample_png(n, seed, labels=None):
        images = sample(n, seed, labels)[table.SAMPLE.output()]
        columns = None if labels is None else checked_scalar(n, "n")
        return {table.SAMPLE_PNG.output(): encode_png(tile_images(images, columns))}

    def interpolate(images_a, images_b, steps, labels=None):
        steps = in_range(checked_scalar(steps, "steps"), "steps", 2, table.MAX_STEPS)
        return {table.INTERPOLATE.output(): vae.interpolate(
            *pictures(images_a=images_a, images_b=images_b), steps, classes_of(labels))}

    def encode(images, labels=None):
        return dict(zip(table.ENCODE.output_names(), vae.encode(*pictures(images=images), classes_of(labels)),
                        strict=True))

    def class_names(labels):
        names = tf.constant(list(vae.classes))
        labels = checked(labels, "labels", [None])
        chosen = tf.gather(names, vae_labels(labels, vae.classes, tf.size(labels)))
        return dict(zip(table.CLASS_NAMES.output_names(), (chosen, names), strict=True))

    functions = {
        table.DECODE: lambda z, labels=None: {table.DECODE.output(): vae.decode(
            latents(z), classes_of(labels))},
        table.LOGITS: lambda z, labels=None: {table.LOGITS.output(): vae.decode_logits(
            latents(z), classes_of(labels))},
        table.SAMPLE: sample,
        table.SAMPLE_PNG: sample_png,
        table.ENCODE: encode,
        table.RECONSTRUCT: lambda images, labels=None: {table.RECONSTRUCT.output(): vae.reconstruct(
            *pictures(images=images), classes_of(labels))},
        table.INTERPOLATE: interpolate,
        table.ANALOGY: lambda images_a, images_b, images_c, labels=None: {table.ANALOGY.output(): vae.analogy(
            *pictures(images_a=images_a, images_b=images_b, images_c=images_c), classes_of(labels))},
        table.LOG_PRIOR: lambda z, labels=None: {table.LOG_PRIOR.output(): vae.log_prior(
            latents(z), classes_of(labels))},
    }
    if conditional:
        functions[table.CLASS_NAMES] = class_names
    return functions


def example_inputs(signature, batch, rng, latent_dim, image_shape, steps=3, classes=None):
    """{input name: array} for `signature`: `batch` examples (n = `batch` for the samplers).

    Args:
        signature: A `keras_vae.serving.signatures.Signature`.
        batch: The batch size, and the `n` of `sample` and `sample_png`.
        rng: A NumPy generator, for the images (uniform in [0, 1]), latents (normal), labels and seeds.
        latent_dim, image_shape: The sizes the table's shapes name.
        steps: The `steps` of `interpolate`.
        classes: The number of classes of a class-conditional model (None: its inputs are left out);
            two distinct classes are asked for (one if there is one).
    """
    scalars = {table.N: batch, table.STEPS: steps, table.SEED: int(rng.integers(2**31))}
    inputs = {}
    for tensor in signature.inputs_of(classes is not None):
        if tensor in scalars:
            inputs[tensor.name] = np.asarray(scalars[tensor], tensor.dtype)
        elif tensor.name == "labels" and tensor.shape == ("asked",):
            inputs[tensor.name] = rng.choice(classes, min(2, classes), replace=False).astype(tensor.dtype)
        elif tensor.name == "labels":
            inputs[tensor.name] = rng.integers(0, classes, batch).astype(tensor.dtype)
        else:
            shape = [batch if size is None else size for size in tensor.dims(latent_dim, image_shape)]
            draw = rng.random if tensor.shape[-1] == "image" else rng.standard_normal
            inputs[tensor.name] = draw(shape).astype(tensor.dtype)
    return inputs


# The networks whose variables each servable holds.
NETWORKS = {"decoder": ("decoder",), "vae": ("encoder", "decoder")}


def servable_layers(vae, model):
    """The layers whose variables servable `model` holds: its networks, and the learned prior's (for a
    VampPrior the encoder too, which maps the pseudo-inputs to the mixture's components)."""
    parts = list(NETWORKS[model])
    if vae.prior == "vamp" and "encoder" not in parts:
        parts.insert(0, "encoder")
    priors = [layer for layer in (vae.class_prior, vae.vamp_prior) if layer is not None]
    return [getattr(vae, part) for part in parts] + priors


class ServingModule(tf.Module):
    """A plain `tf.Module` holding a VAE's variables and the serving functions of one servable.

    Args:
        vae: The `keras_vae.VAE` to serve.
        model: The servable, "decoder" or "vae" (`keras_vae.serving.signatures.MODELS`).
        rng: A NumPy generator for the example inputs, which feed the warm-up requests and the check
            of the export (3 examples per signature).

    Attributes:
        functions: {signature name in the SavedModel: tf.function}; a signature served under two names
            (the vae's `encode`, also its `serving_default`) is one function.
        examples: {signature name in the SavedModel: {input name: example array}}.
        eager: {signature name in the SavedModel: the same Python function, run eagerly}: the
            in-memory model that the export is checked against, on another path than the graph.
        half_precision: Whether some layer computes in 16 bits (mixed precision), where the eager and
            the graph path may round differently.
    """

    def __init__(self, vae, model, rng):
        super().__init__()
        layers = servable_layers(vae, model)
        # Track the raw tf.Variables, not the Keras objects: the SavedModel then needs only TensorFlow.
        self.model_variables = [v.value for layer in layers for v in layer.variables]
        self.half_precision = any(getattr(sub, "compute_dtype", None) in ("float16", "bfloat16")
                                  for layer in layers for sub in getattr(layer, "layers", [layer]))
        classes = None if vae.classes is None else len(vae.classes)
        conditional = classes is not None
        python_functions, graphs = signature_functions(vae), {}
        self.functions, self.examples, self.eager = {}, {}, {}
        for key, signature in table.of_model(model, conditional).items():
            if signature not in graphs:
                specs = [tf.TensorSpec(tensor.dims(vae.latent_dim, vae.image_shape, classes), tensor.dtype,
                                       name=tensor.name) for tensor in signature.inputs_of(conditional)]
                graphs[signature] = tf.function(python_functions[signature], input_signature=specs)
            self.functions[key], self.eager[key] = graphs[signature], python_functions[signature]
            self.examples[key] = example_inputs(signature, 3, rng, vae.latent_dim, vae.image_shape,
                                                classes=classes)
