"""Pictures as PNG files: image grids, and matplotlib charts of a fixed pixel size."""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

GRID_PADDING = 2
FIGURE_DPI = 100
SCATTER_INCHES = (6, 6)  # 600 x 600 pixels
CURVES_INCHES = (12, 4)  # 1200 x 400 pixels
# The per-epoch metrics of a run's history, and the title of each chart.
CURVES = (("loss", "loss (reconstruction + beta KL)"), ("reconstruction_loss", "reconstruction"),
          ("kl_loss", "KL"))


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
    pixels = tf.round(tf.clip_by_value(tf.cast(grid, tf.float32), 0.0, 1.0) * 255.0)
    return tf.io.encode_png(tf.cast(pixels, tf.uint8))


def image_grid(images, columns=None):
    """Tiles images [N, H, W, C] in [0, 1] into one float32 array (see `tile_images`)."""
    return tile_images(tf.constant(np.asarray(images, np.float32)), columns).numpy()


def _pyplot():
    """matplotlib.pyplot on the Agg backend, which needs no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_atomically(path, write):
    """Calls `write(temporary_path)`, then renames the file to `path`, so `path` is never partial."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    write(temporary)
    os.replace(temporary, path)


def write_png(data, path):
    """Writes PNG bytes to `path`, replacing it only once the file is complete."""
    _write_atomically(path, lambda file: Path(file).write_bytes(data))


def save_png(array, path):
    """Writes an [H, W, 1 or 3] array in [0, 1] as an 8-bit PNG (see `encode_png`)."""
    write_png(encode_png(array).numpy(), path)


def save_image_grid(images, path, columns=None):
    """Writes images [N, H, W, C] in [0, 1] as one PNG grid."""
    save_png(image_grid(images, columns), path)


def save_figure(figure, path):
    """Writes a matplotlib figure as a PNG of exactly its size times FIGURE_DPI pixels, then closes it."""
    _write_atomically(path, lambda file: figure.savefig(file, dpi=FIGURE_DPI, format="png"))
    _pyplot().close(figure)


def save_scatter(points, path, labels=None, axis_labels=("z[0]", "z[1]"), title=""):
    """Writes a scatter plot of 2-D points, coloured by integer label when labels are given.

    Args:
        points: Array [N, 2].
        path: PNG file to write (SCATTER_INCHES times FIGURE_DPI pixels).
        labels: Optional array [N] of class labels, shown in a legend.
        axis_labels: Names of the x and y axes.
        title: Figure title.
    """
    plt = _pyplot()
    points = np.asarray(points)
    figure, axes = plt.subplots(figsize=SCATTER_INCHES)
    if labels is None:
        axes.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6)
    else:
        drawn = axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, alpha=0.8)
        axes.legend(*drawn.legend_elements(num=None), title="label", loc="best", fontsize="small")
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    axes.set_title(title)
    figure.tight_layout()
    save_figure(figure, path)


def save_training_curves(history, path):
    """Writes loss, reconstruction and KL per epoch, training and validation, side by side.

    Args:
        history: List of per-epoch dicts with "epoch" and the keys of CURVES, each also prefixed "val_"
            (the "history" of a run's metrics.json); missing keys are left out of the chart.
        path: PNG file to write (CURVES_INCHES times FIGURE_DPI pixels).
    """
    plt = _pyplot()
    figure, all_axes = plt.subplots(1, len(CURVES), figsize=CURVES_INCHES)
    epochs = [record["epoch"] for record in history]
    for axes, (key, title) in zip(all_axes, CURVES, strict=True):
        for prefix, name in (("", "training"), ("val_", "validation")):
            if all(prefix + key in record for record in history):
                axes.plot(epochs, [record[prefix + key] for record in history], marker=".", label=name)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel("nats per image")
        if axes.lines:
            axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
