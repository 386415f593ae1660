"""The latent map of a data split: its posterior means, their principal axes, and latents built on them.

The map shows the posterior means of the split's images projected on their first two principal axes
(`keras_vae.evaluation.figures.principal_axes`, NumPy's SVD). A point of the map is a latent again:
the mean of the means plus the point's coordinates along those axes. Traversals move a latent along
the top principal axes (in standard deviations of the means) or along each latent dimension.
"""

import numpy as np

from keras_vae.evaluation.figures import principal_axes
from keras_vae.explore.backends import ApiError
from keras_vae.images import to_unit_interval

ENCODE_BATCH = 250  # images per encode call: small REST bodies, and few calls
BASES = ("pca", "latent")
MAX_SLIDERS = 10  # principal directions offered as sliders


class LatentMap:
    """The posterior means of a split's images, and the latents the page builds from them.

    Args:
        model: A `LocalModel` or `ServedModel`.
        images: uint8 images [N, H, W, C] of the split (N >= 1).
        labels: Their class indices [N], or None.
        classes: The split's class names, or None.
    """

    def __init__(self, model, images, labels=None, classes=None):
        self.images, self.labels, self.classes = images, labels, classes
        conditional = model.classes is not None
        self.means = np.concatenate([
            model.encode(to_unit_interval(images[start:start + ENCODE_BATCH]).numpy(),
                         labels[start:start + ENCODE_BATCH] if conditional else None)
            for start in range(0, len(images), ENCODE_BATCH)])
        self.centre, axes, self.deviations, self.explained = principal_axes(self.means)
        # Fewer images than latent dimensions leave axes out; zero rows keep every index valid.
        latent_dim = self.means.shape[1]
        self.axes = np.zeros((latent_dim, latent_dim))
        self.axes[:len(axes)] = axes
        self.deviations = np.pad(self.deviations, (0, latent_dim - len(self.deviations)))
        self.explained = np.pad(self.explained, (0, latent_dim - len(self.explained)))
        self.points = (self.means - self.centre) @ self.axes[:2].T
        self.sliders = {"pca": min(MAX_SLIDERS, latent_dim), "latent": latent_dim}

    def document(self):
        """The map as the page draws it: points, labels, class names, the axes' shares of the variance."""
        return {"points": np.round(self.points, 4).tolist(),
                "labels": None if self.labels is None else np.asarray(self.labels).tolist(),
                "classes": None if self.classes is None else list(self.classes),
                "explained": np.round(self.explained[:2], 4).tolist(),
                "count": len(self.points)}

    def at(self, point):
        """The latent [latent_dim] at a point (x, y) of the map."""
        return (self.centre + np.asarray(point, np.float64) @ self.axes[:2]).astype(np.float32)

    def moved(self, base, basis, offsets):
        """`base` [latent_dim] moved by `offsets` along the first axes of `basis`.

        Args:
            base: A latent.
            basis: "pca" (offsets in standard deviations of the means along the principal axes) or
                "latent" (offsets added to the latent's dimensions).
            offsets: One number per slider, at most `sliders[basis]`.

        Raises:
            ApiError: for an unknown basis or too many offsets.
        """
        if basis not in BASES:
            raise ApiError(400, f"basis must be one of {', '.join(BASES)}; got {basis!r}.")
        offsets = np.asarray(offsets, np.float64)
        if len(offsets) > self.sliders[basis]:
            raise ApiError(400, f"basis {basis!r} takes at most {self.sliders[basis]} offsets; got "
                                f"{len(offsets)}.")
        if basis == "pca":
            step = (offsets * self.deviations[:len(offsets)]) @ self.axes[:len(offsets)]
        else:
            step = np.pad(offsets, (0, len(base) - len(offsets)))
        return (np.asarray(base, np.float64) + step).astype(np.float32)
