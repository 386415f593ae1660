"""Images held in memory as uint8 arrays: a split (`InMemorySplit`) and its training source."""

from keras_vae.data import pipelines
from keras_vae.errors import UserError


class InMemoryImages:
    """A training data source over uint8 images held in memory (see `keras_vae.data.protocols`).

    Args:
        images: uint8 array [N, H, W, C].
        batch_size: Global batch size.
        seed: Seed of each epoch's order and of dynamic binarization.
        binarize_mode: "none", "static" or "dynamic" (see `keras_vae.data.binarize`).

    Raises:
        UserError: if there is not one full batch.
    """

    def __init__(self, images, batch_size, seed=0, binarize_mode="none"):
        self.steps_per_epoch = pipelines.steps_per_epoch(len(images), batch_size)
        self.image_shape = tuple(images.shape[1:])
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.binarize_mode = binarize_mode

    def dataset(self, first_epoch=0, first_step=0, input_context=None):
        """Endless uint8 batches from step `first_step` of epoch `first_epoch` on.

        For `Model.fit`, pass `steps_per_epoch=self.steps_per_epoch`: Keras then keeps one iterator
        over the epochs, and each epoch sees the same batches as under the `Trainer`.
        """
        return pipelines.training_dataset(self.images, self.batch_size, self.seed, first_epoch,
                                          self.binarize_mode, first_step, input_context)


class InMemorySplit:
    """A split held in memory as uint8 images [N, H, W, C] and labels (or None); see `protocols.Split`."""

    def __init__(self, images, labels, description):
        if len(images) == 0:
            raise UserError(f"The split {description} is empty: check the slice bounds.")
        self.images, self.labels = images, labels
        self.count = len(images)
        self.image_shape = tuple(images.shape[1:])
        self.description = f"in memory, from {description}"

    def training_source(self, batch_size, seed, binarize_mode="none"):
        return InMemoryImages(self.images, batch_size, seed, binarize_mode)

    def evaluation_dataset(self, batch_size, binarize_mode="none"):
        return pipelines.evaluation_dataset(self.images, batch_size, binarize_mode)

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
