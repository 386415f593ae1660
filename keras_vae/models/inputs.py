"""Checks of what users hand the model's methods (images, latents, labels), with messages that say what
to change instead of a shape error from deep inside the network."""

import numpy as np
import tensorflow as tf

from keras_vae.errors import UserError

MAX_SHOWN = 10  # labels written out in full in a message; more are described by their shape


def checked_input(value, name, shape, unit_interval=False):
    """`value` as a float32 tensor, after checking its static shape against `shape` (None: any size).

    The value-range check runs only eagerly: in a graph (the serving signatures)
    `keras_vae.serving.functions` checks values in the graph.
    """
    tensor = tf.convert_to_tensor(value)
    if tensor.dtype.is_integer and unit_interval:
        raise ValueError(f"{name} must be floats in [0, 1]; got {tensor.dtype.name} values. Divide "
                         "uint8 pixels by 255.")
    expected = "[" + ", ".join("batch" if size is None else str(size) for size in shape) + "]"
    actual = tensor.shape
    mismatch = actual.rank is not None and (actual.rank != len(shape) or any(
        want is not None and got is not None and want != got
        for want, got in zip(shape, actual, strict=True)))
    if mismatch:
        raise ValueError(f"{name} must have shape {expected}; got {tuple(actual)}.")
    tensor = tf.cast(tensor, tf.float32)
    if unit_interval and tf.executing_eagerly() and tf.size(tensor) > 0:
        low, high = float(tf.reduce_min(tensor)), float(tf.reduce_max(tensor))
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1]; got values from {low} to {high}. Scale "
                             "the pixels (e.g. divide uint8 images by 255).")
    return tensor


def check_same_batch(tensors):
    """Raises ValueError if the tensors' static batch sizes are known and differ.

    Broadcasting would otherwise pair one image with a whole batch silently; in a graph whose sizes are
    unknown, the serving functions check them when the graph runs.

    Args:
        tensors: {argument name: tensor}.
    """
    sizes = {name: tensor.shape[0] for name, tensor in tensors.items()}
    if len({size for size in sizes.values() if size is not None}) > 1:
        raise ValueError(f"{', '.join(sizes)} must have the same batch size; got {sizes}.")


def class_names(classes):
    """The class names of `classes` (a number of classes, or the names), as a tuple of strings.

    Raises:
        UserError: for fewer than one class or repeated names.
    """
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        names = tuple(str(index) for index in range(int(classes)))
    elif isinstance(classes, (list, tuple)) and all(isinstance(name, str) for name in classes):
        names = tuple(classes)
    else:
        raise UserError("classes must be the number of classes or their names (strings). "
                        f"Received: classes={classes!r}.")
    if not names or len(set(names)) != len(names):
        raise UserError(f"classes must name at least one class, each once. Received: classes={classes!r}.")
    return names


def _received(labels):
    """`labels` as a message shows them: in full when short, else by their shape."""
    if isinstance(labels, tf.Tensor) and not tf.executing_eagerly():
        return f"a tensor of shape {labels.shape}"
    array = np.asarray(labels)
    return repr(array.tolist()) if array.size <= MAX_SHOWN else f"an array of shape {array.shape}"


def checked_labels(labels, classes, batch):
    """The class indices of a batch as int32 [batch]; one integer stands for every example.

    Args:
        labels: None, an integer, or integers [batch].
        classes: The model's class names, or None for a model that is not class-conditional.
        batch: The number of examples (an int or a scalar tensor).

    Returns:
        int32 [batch], or None for a model that is not class-conditional.

    Raises:
        ValueError: for labels given to a model that is not conditional, missing labels, non-integer
            labels, labels of another shape, or (eagerly) labels outside 0 to len(classes) - 1. In a
            graph the range and size are checked when it runs (an InvalidArgument error).
    """
    if classes is None:
        if labels is None:
            return None
        raise ValueError("labels are for a class-conditional model, and this one was built without "
                         f"`classes`. Received: labels={_received(labels)}.")
    count = len(classes)
    valid = f"class indices from 0 to {count - 1} (the model's {count} classes)"
    if labels is None:
        raise ValueError(f"This model is class-conditional: pass labels, {valid}, one per example or "
                         "one for all. Received: labels=None.")
    tensor = tf.convert_to_tensor(labels)
    if not tensor.dtype.is_integer:
        raise ValueError(f"labels must be {valid}; got {tensor.dtype.name} values. "
                         f"Received: labels={_received(labels)}.")
    static_batch = tf.get_static_value(batch)
    rank = tensor.shape.rank
    if rank not in (None, 0, 1) or (rank == 1 and None not in (static_batch, tensor.shape[0])
                                    and tensor.shape[0] != static_batch):
        raise ValueError(f"labels must be one class index, or one per example (shape [] or "
                         f"[{'batch' if static_batch is None else static_batch}]); got shape "
                         f"{tuple(tensor.shape)}. Received: labels={_received(labels)}.")
    tensor = tf.cast(tensor, tf.int32)
    if tf.executing_eagerly():
        if tf.size(tensor) > 0:
            low, high = int(tf.reduce_min(tensor)), int(tf.reduce_max(tensor))
            if low < 0 or high >= count:
                raise ValueError(f"labels must be {valid}; got values from {low} to {high}. "
                                 f"Received: labels={_received(labels)}.")
    else:
        in_range = tf.reduce_all(tf.logical_and(tensor >= 0, tensor < count))
        checks = [tf.debugging.Assert(in_range, [f"labels must be {valid}; got values from",
                                                 tf.reduce_min(tensor), "to", tf.reduce_max(tensor)])]
        if rank != 0:
            checks.append(tf.debugging.Assert(
                tf.equal(tf.size(tensor), tf.cast(batch, tf.int32)),
                ["labels must be one class index, or one per example; got", tf.size(tensor),
                 "labels for", batch, "examples"]))
        with tf.control_dependencies(checks):
            tensor = tf.identity(tensor)
    if rank == 0:
        return tf.fill(tf.reshape(tf.cast(batch, tf.int32), [1]), tensor)
    return tensor
