"""Pictures of what a VAE learned (what `evaluate.py` writes): image grids and matplotlib charts.

The functions take a `keras_vae.Autoencoder` (a `keras_vae.VAE` or an `ExportedVAE`), or its `decode`,
so they draw the same pictures of a Keras model and of the deployed SavedModels.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae.files import staged
from keras_vae.images import save_image_grid

FIGURE_DPI = 100
SCATTER_INCHES = (6, 6)  # 600 x 600 pixels
CURVES_INCHES = (12, 4)  # 1200 x 400 pixels
# The per-epoch metrics of a run's history, and the title of each chart.
CURVES = (("loss", "loss (reconstruction + beta KL)"), ("reconstruction_loss", "reconstruction"),
          ("kl_loss", "KL"))

SAMPLE_COUNT = 64
RECONSTRUCTION_COLUMNS = 8
RECONSTRUCTION_COUNT = 16
INTERPOLATION_PAIRS = 8
INTERPOLATION_STEPS = 10
MANIFOLD_SIZE = 20
TRAVERSAL_STEPS = 11
TRAVERSAL_MAX_UNITS = 32
# write_pictures shows the first images it is given: reconstructions and interpolation pairs.
IMAGES_SHOWN = max(RECONSTRUCTION_COUNT, 2 * INTERPOLATION_PAIRS)
# Quantiles of N(0, 1) spanned by the manifold (as in Kingma and Welling 2014).
QUANTILE_RANGE = (0.05, 0.95)
# Values each unit takes in a traversal (as in Higgins et al. 2017): one unit changes, the others stay
# at an image's code, so a narrower sweep barely changes the picture.
TRAVERSAL_SPAN = (-3.0, 3.0)


def normal_quantiles(count):
    """`count` evenly spaced probabilities in QUANTILE_RANGE mapped through the inverse N(0, 1) CDF."""
    return tf.math.ndtri(tf.linspace(*QUANTILE_RANGE, count)).numpy()


def reconstruction_rows(originals, reconstructions, columns):
    """Orders images so that a grid of `columns` shows each row of originals above its reconstructions.

    Args:
        originals, reconstructions: Arrays [N, H, W, C] with N a multiple of `columns`.
    """
    rows = [part[start : start + columns] for start in range(0, len(originals), columns)
            for part in (originals, reconstructions)]
    return np.concatenate(rows)


def interpolations(decode, first, second, first_means, second_means, steps):
    """Rows that walk in latent space from each image in `first` to its partner in `second`.

    Each row holds the first image, `steps` decoded points on the straight line between the two
    posterior means (both ends included), and the second image: `steps + 2` columns.
    """
    weights = np.linspace(0.0, 1.0, steps)[None, :, None]
    z = (1.0 - weights) * first_means[:, None] + weights * second_means[:, None]
    decoded = np.asarray(decode(z.reshape(-1, z.shape[-1]).astype(np.float32)))
    decoded = decoded.reshape(len(first), steps, *decoded.shape[1:])
    return np.concatenate([first[:, None], decoded, second[:, None]], axis=1).reshape(
        -1, *decoded.shape[2:])


def manifold(decode, size):
    """Decodes a size x size grid over a 2-D latent: z[0] grows to the right, z[1] upwards."""
    quantiles = normal_quantiles(size)
    z0, z1 = np.meshgrid(quantiles, quantiles[::-1])
    return np.asarray(decode(np.stack([z0.ravel(), z1.ravel()], axis=1).astype(np.float32)))


def traversal(decode, base, units, steps):
    """One row per unit in `units`: `base` [latent] with that unit swept evenly over TRAVERSAL_SPAN."""
    z = np.tile(np.asarray(base, np.float32), (len(units), steps, 1))
    for row, unit in enumerate(units):
        z[row, :, unit] = np.linspace(*TRAVERSAL_SPAN, steps)
    return np.asarray(decode(z.reshape(-1, len(base))))


def principal_axes(points):
    """The principal axes of points [N, D], by the SVD of the centred points.

    Returns:
        (the mean point [D], the axes [min(N, D), D] as unit rows, largest variance first, the
        standard deviation along each [min(N, D)], the fraction of the variance each explains).
    """
    points = np.asarray(points, np.float64)
    centre = np.mean(points, axis=0)
    _, singular_values, axes = np.linalg.svd(points - centre, full_matrices=False)
    explained = singular_values**2 / max(np.sum(singular_values**2), np.finfo(np.float64).tiny)
    return centre, axes, singular_values / np.sqrt(max(len(points) - 1, 1)), explained


def principal_components(points, count=2):
    """Projects points [N, D] on their first `count` principal axes.

    Returns:
        (projections [N, count], fraction of the variance each axis explains [count]).
    """
    centre, axes, _, explained = principal_axes(points)
    return (np.asarray(points, np.float64) - centre) @ axes[:count].T, explained[:count]


def class_rows(model, columns, seed):
    """One row per class of a class-conditional model: `model.sample(columns, seed, c)` for each class
    c, so that a column's images come from the same noise (the served `sample` signature's grid)."""
    return np.concatenate([np.asarray(model.sample(columns, seed, c)) for c in range(len(model.classes))])


def write_pictures(out_dir, model, images, means, labels=None, history=None, seed=0):
    """Writes every picture of a model and returns the paths written.

    Args:
        out_dir: Folder for the PNG files.
        model: A `keras_vae.Autoencoder`.
        images: The first evaluated images [n, H, W, C] in [0, 1] (up to IMAGES_SHOWN are shown).
        means: The posterior means [N, latent] of all evaluated images, the shown ones first.
        labels: Optional class labels [N] to colour the latent scatter plots; for a class-conditional
            model (`model.classes`), the classes its decodings are of (needed).
        history: Optional per-epoch training metrics (`history` of metrics.json) for training_curves.png.
        seed: Seed of the prior samples: samples.png holds `model.sample(SAMPLE_COUNT, seed)`, the
            images of the exported `sample` signature (and of `sample.py --seed`) for that seed; for a
            class-conditional model, one row per class (`class_rows`), SAMPLE_COUNT images in all.
    """
    out_dir, latent_dim, written = Path(out_dir), means.shape[1], []
    classes = getattr(model, "classes", None)

    def decode_of(chosen):
        """`model.decode` with the classes `chosen` (of each latent, or one for all)."""
        return model.decode if classes is None else lambda z: model.decode(z, chosen)

    def target(name):
        written.append(out_dir / name)
        return out_dir / name

    if classes is None:
        save_image_grid(model.sample(SAMPLE_COUNT, seed), target("samples.png"))
    else:
        columns = max(1, SAMPLE_COUNT // len(classes))
        save_image_grid(class_rows(model, columns, seed), target("samples.png"), columns)
    columns = min(RECONSTRUCTION_COLUMNS, len(images))
    shown = min(RECONSTRUCTION_COUNT, len(images)) // columns * columns
    chosen = None if classes is None else np.asarray(labels[:shown], np.int32)
    reconstructions = np.asarray(decode_of(chosen)(means[:shown]))
    save_image_grid(reconstruction_rows(images[:shown], reconstructions, columns),
                    target("reconstructions.png"), columns)
    # The manifold and the traversal decode with the class of the first image (the traversal's start).
    decode = decode_of(None if classes is None else int(labels[0]))
    pairs = min(INTERPOLATION_PAIRS, len(images) // 2)
    if pairs:
        first, second = slice(0, 2 * pairs, 2), slice(1, 2 * pairs, 2)
        # Each row decodes with the class of its first image.
        chosen = None if classes is None else np.repeat(np.asarray(labels[first], np.int32),
                                                        INTERPOLATION_STEPS)
        rows = interpolations(decode_of(chosen), images[first], images[second], means[first], means[second],
                              INTERPOLATION_STEPS)
        save_image_grid(rows, target("interpolations.png"), INTERPOLATION_STEPS + 2)
    if latent_dim == 2:
        save_image_grid(manifold(decode, MANIFOLD_SIZE), target("manifold.png"), MANIFOLD_SIZE)
        save_scatter(means, target("latent_means.png"), labels,
                           title="posterior means of the evaluated images")
    else:
        # Most active units first: the rows that change come first, and they are the ones kept. The
        # sweep starts from the first image's posterior mean: around z = 0 every row is a grey blur.
        units = np.argsort(-np.var(means, axis=0), kind="stable")[:TRAVERSAL_MAX_UNITS]
        save_image_grid(traversal(decode, means[0], units, TRAVERSAL_STEPS),
                              target("traversal.png"), TRAVERSAL_STEPS)
    if latent_dim > 2:
        projections, explained = principal_components(means)
        save_scatter(projections, target("latent_pca.png"), labels,
                           axis_labels=[f"PC{i + 1} ({share:.0%} of the variance)"
                                        for i, share in enumerate(explained)],
                           title="posterior means, first two principal components")
    if history:
        save_training_curves(history, target("training_curves.png"))
    return written


def _pyplot():
    """matplotlib.pyplot on the Agg backend, which needs no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path):
    """Writes a matplotlib figure as a PNG of exactly its size times FIGURE_DPI pixels, then closes it."""
    with staged([path]) as (temporary,):
        figure.savefig(temporary, dpi=FIGURE_DPI, format="png")
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
