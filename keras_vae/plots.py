"""Pictures as PNG files."""

import math
import os
from pathlib import Path

import numpy as np

GRID_PADDING = 2


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


def save_png(array, path):
    """Writes an [H, W, 1 or 3] array in [0, 1] as a PNG, replacing `path` only once it is complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    if array.shape[-1] == 1:
        plt.imsave(temporary, array[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(temporary, array)
    os.replace(temporary, path)


def save_image_grid(images, path, columns=None):
    """Writes images [N, H, W, C] in [0, 1] as one PNG grid."""
    save_png(image_grid(images, columns), path)
