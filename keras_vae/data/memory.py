"""Images held in memory as uint8 arrays: a split (`InMemorySplit`) and its training source."""

import numpy as np

from keras_vae.data import pipelines
from keras_vae.errors import UserError


class InMemoryImages:
    """A training data source over uint8 images held in memory (see `keras_vae.data.protocols`).

    Args:
        images: uint8 array [N, H, W, C].
        batch_size: Global batch size.
        seed: Seed of each epoch's order and of dynamic binarization.
        binarize_mode: "none", "static" or "dynamic" (see `keras_vae.data.binarize`).
        labels: Integer class labels [N], for a class-conditional model: the batches are then
            (images, int32 labels).

    Raises:
        UserError: if there is not one full batch.
        ValueError: for labels that are not one integer per image.
    """

    def __init__(self, images, batch_size, seed=0, binarize_mode="none", labels=None):
        self.steps_per_epoch = pipelines.steps_per_epoch(len(images), batch_size)
        self.image_shape = tuple(images.shape[1:])
        if labels is not None and (np.shape(labels) != (len(images),)
                                   or not np.issubdtype(np.asarray(labels).dtype, np.integer)):
            raise ValueError(f"labels must be one integer class index per image, shape ({len(images)},); "
                             f"got {np.asarray(labels).dtype.name} labels of shape {np.shape(labels)}.")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed
        self.binarize_mode = binarize_mode

    def dataset(self, first_epoch=0, first_step=0, input_context=None):
        """Endless uint8 batches from step `first_step` of epoch `first_epoch` on.

        For `Model.fit`, pass `steps_per_epoch=self.steps_per_epoch`: Keras then keeps one iterator
        over the epochs, and each epoch sees the same batches as under the `Trainer`.
        """
        return pipelines.training_dataset(self.images, self.batch_size, self.seed, first_epoch,
                                          self.binarize_mode, first_step, input_context, self.labels)


class InMemorySplit:
    """A split held in memory as uint8 images [N, H, W, C] and labels (or None); see `protocols.Split`.

    Args:
        classes: The class names of the labels (index i names label i); without them, labels 0 to
            their largest value are named "0", "1", ...
    """

    def __init__(self, images, labels, description, classes=None):
        if len(images) == 0:
            raise UserError(f"The split {description} is empty: check the slice bounds.")
        self.images, self.labels = images, labels
        self.count = len(images)
        self.image_shape = tuple(images.shape[1:])
        self.description = f"in memory, from {description}"
        if labels is not None and classes is None:
            classes = tuple(str(label) for label in range(int(np.max(labels)) + 1))
        self.classes = None if labels is None else tuple(classes)

    def training_source(self, batch_size, seed, binarize_mode="none", labels=False):
        chosen = pipelines.require_labels(self.labels, self.description) if labels else None
        return InMemoryImages(self.images, batch_size, seed, binarize_mode, chosen)

    def evaluation_dataset(self, batch_size, binarize_mode="none", labels=False):
        chosen = pipelines.require_labels(self.labels, self.description) if labels else None
        return pipelines.evaluation_dataset(self.images, batch_size, binarize_mode, chosen)

    def load_all(self, limit=None):
        return self.images[:limit], None if self.labels is None else self.labels[:limit]

    def bad_pictures(self):
        return []  # decoded already

    def without(self, names):
        if names:
            raise ValueError(f"An in-memory split has no pictures to leave out. Received: names={names!r}.")
        return self

    def find_bad(self):
        return []
