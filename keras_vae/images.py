"""Pixel conventions and image grids: the unit interval, 8-bit pixels, tiling, PNG files.

The one place that says what a pixel is: uint8 0..255 on disk and in input pipelines, float32 in
[0, 1] in the models. Grids are tiled in TensorFlow ops, so the exported `sample_png` signature draws
exactly the grid that `sample.py`, the training's sample grids and `evaluate.py` write.
"""

import numpy as np
import tensorflow as tf

from keras_vae import files

GRID_PADDING = 2
MAX_PIXEL = 255.0


def to_unit_interval(images):
    """uint8 pixels (0..255) as float32 in [0, 1]."""
    return tf.cast(images, tf.float32) / MAX_PIXEL


def to_uint8(images):
    """Pixels in [0, 1] (clipped to it) as uint8 0..255, rounded to the nearest level."""
    pixels = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
    return tf.cast(tf.round(pixels * MAX_PIXEL), tf.uint8)


def tile_images(images, columns=None):
    """Tiles images [N, H, W, C] into one grid [rows*(H+p)+p, columns*(W+p)+p, C], in TensorFlow ops.

    The one implementation of the grid layout: `image_grid` runs it eagerly, and the decoder's
    `sample_png` serving signature runs it inside the exported graph, where N is known only at run time.

    Args:
        images: Tensor of N images; values are clipped to [0, 1]. Gaps and empty cells are white.
        columns: Images per row (default: ceil(sqrt(N)), a near-square grid); an int or int32 tensor.
    """
    images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
    count = tf.shape(images)[0]
    if columns is None:
        # float64: exact for perfect squares, as math.sqrt is.
        columns = tf.cast(tf.math.ceil(tf.sqrt(tf.cast(count, tf.float64))), tf.int32)
    columns = tf.cast(columns, tf.int32)
    rows = (count + columns - 1) // columns
    pad = GRID_PADDING
    # Each cell is an image with a gap below and to its right; blank cells fill the last row.
    cells = tf.pad(images, [[0, rows * columns - count], [0, pad], [0, pad], [0, 0]], constant_values=1.0)
    height, width, channels = (tf.shape(cells)[i] for i in (1, 2, 3))
    grid = tf.reshape(cells, [rows, columns, height, width, channels])
    grid = tf.reshape(tf.transpose(grid, [0, 2, 1, 3, 4]), [rows * height, columns * width, channels])
    grid = tf.pad(grid, [[pad, 0], [pad, 0], [0, 0]], constant_values=1.0)
    return tf.ensure_shape(grid, [None, None, images.shape[-1]])


def encode_png(grid):
    """PNG bytes (a scalar string tensor) of an [H, W, 1 or 3] image in [0, 1], 8 bits per channel."""
    return tf.io.encode_png(to_uint8(grid))


def image_grid(images, columns=None):
    """Tiles images [N, H, W, C] in [0, 1] (an array or a tensor) into one float32 array."""
    return tile_images(tf.constant(np.asarray(images, np.float32)), columns).numpy()


def write_png(data, path):
    """Writes PNG bytes to `path`, replacing it only once the file is complete."""
    files.write_bytes(data, path)


def save_image_grid(images, path, columns=None):
    """Writes images [N, H, W, C] in [0, 1] (an array or a tensor) as one PNG grid."""
    write_png(encode_png(image_grid(images, columns)).numpy(), path)
