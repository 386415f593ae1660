"""Pictures as PNG files: image grids, and matplotlib charts of a fixed pixel size."""

import math
import os
from pathlib import Path

import numpy as np

GRID_PADDING = 2
FIGURE_DPI = 100
SCATTER_INCHES = (6, 6)  # 600 x 600 pixels
CURVES_INCHES = (12, 4)  # 1200 x 400 pixels
# The per-epoch metrics of a run's history, and the title of each chart.
CURVES = (("loss", "loss (reconstruction + beta KL)"), ("reconstruction_loss", "reconstruction"),
          ("kl_loss", "KL"))


def image_grid(images, columns=None):
    """Tiles images [N, H, W, C] in [0, 1] into one array [rows*(H+p)+p, columns*(W+p)+p, C].

    Args:
        images: Array of N images; values are clipped to [0, 1].
        columns: Images per row (default: ceil(sqrt(N)), a near-square grid).
    """
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    pad = GRID_PADDING
    grid = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), np.float32)
    for index, image in enumerate(images):
        top = pad + (index // columns) * (height + pad)
        left = pad + (index % columns) * (width + pad)
        grid[top : top + height, left : left + width] = image
    return grid


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


def save_png(array, path):
    """Writes an [H, W, 1 or 3] array in [0, 1] as a PNG, replacing `path` only once it is complete."""
    plt = _pyplot()
    if array.shape[-1] == 1:
        image, options = array[..., 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    else:
        image, options = array, {}
    _write_atomically(path, lambda file: plt.imsave(file, image, **options))


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
