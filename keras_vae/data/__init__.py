"""Image data: IDX files, TensorFlow Datasets and folders of pictures, and their `tf.data` pipelines.

`open_split` returns a split, in memory (`InMemorySplit`) or streamed (`ImageFolder`, `TfdsRecords`),
with one interface: `count`, `image_shape`, `description`, `training_source(batch_size, seed,
binarize_mode)` (see `keras_vae.data.pipelines` for the protocol the training loop drives),
`evaluation_dataset(batch_size, binarize_mode)`, `load_all(limit)` and `find_bad()`.
IDX files and small TFDS data sets load into memory; folders of pictures and large TFDS data sets
stream from their files (`stream="auto"`).
"""

import contextlib

import tensorflow as tf

from keras_vae.data import idx, pipelines, tfds_data
from keras_vae.data.folders import ImageFolder
from keras_vae.data.pipelines import (
    InMemoryImages,
    evaluation_dataset,
    steps_per_epoch,
    training_dataset,
)
from keras_vae.data.tfds_data import TfdsRecords
from keras_vae.errors import UserError

__all__ = ["ImageFolder", "InMemoryImages", "InMemorySplit", "TfdsRecords", "evaluation_dataset",
           "load_split", "naming_bad_pictures", "open_split", "split_of", "steps_per_epoch",
           "training_dataset"]


class InMemorySplit:
    """A split held in memory as uint8 images [N, H, W, C] and labels (or None)."""

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

    def find_bad(self):
        return []


def open_split(expression, dataset="mnist", data_dir=None, image_dir=None, image_size=None,
               grayscale=False, stream="auto"):
    """Opens a split of a folder of pictures (`image_dir`), IDX files (`data_dir`) or a TFDS data set.

    Args:
        expression: The split: TFDS's syntax for TFDS data sets; `train`/`test` with slices for IDX
            files; `train` with slices for a folder (see `keras_vae.data.folders`).
        dataset: TFDS data set name, used when neither folder is given.
        image_size: (height, width) to resize pictures to (folders and streamed TFDS data sets).
        grayscale: Convert colour pictures to grey (folders and streamed TFDS data sets).
        stream: For TFDS data sets: "on", "off", or "auto" (see `tfds_data.streams_by_default`).

    Raises:
        UserError: for anything wrong with the data or the options.
    """
    if image_dir is not None:
        if stream == "off":
            raise UserError("Folders of pictures are always streamed; leave out --stream off.")
        return ImageFolder(image_dir, expression, image_size, grayscale)
    if data_dir is not None:
        if image_size is not None or grayscale or stream == "on":
            raise UserError("IDX files are read into memory as they are: --image-size, --grayscale and "
                            "--stream on work with --image-dir and TFDS data sets.")
        images, labels = idx.load_split(expression, data_dir)
        return InMemorySplit(images, labels, f"IDX files in {data_dir}, split {expression!r}")
    builder = tfds_data.prepared_builder(dataset, expression)
    streamed = stream == "on" or (
        stream == "auto" and tfds_data.streams_by_default(builder, expression, image_size, grayscale))
    if streamed:
        return TfdsRecords(builder, expression, image_size, grayscale)
    if image_size is not None or grayscale:
        raise UserError("--image-size and --grayscale need the streamed path: leave out --stream off.")
    images, labels = tfds_data.load_in_memory(builder, expression)
    return InMemorySplit(images, labels, f"TFDS {dataset} {expression}")


@contextlib.contextmanager
def naming_bad_pictures(*splits):
    """Turns an input pipeline error caused by pictures of `splits` into a `UserError` naming them.

    The decoding ops' errors do not say which picture failed, so this reads the splits once more
    (`find_bad`); errors that no picture explains pass through unchanged.
    """
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
            tf.errors.DataLossError):
        messages = [message for split in splits for message in split.find_bad()]
        if not messages:
            raise
        raise UserError(
            "Some pictures cannot be used:\n  " + "\n  ".join(messages)
            + "\nNothing was exported. Replace them, and run the same command again (training resumes "
            "from its last backup; after removing pictures, the split is another one: add --restart)."
        ) from None


def split_of(config, expression):
    """`open_split` with the data options of a `TrainConfig` or `EvaluateConfig`."""
    return open_split(expression, config.dataset, config.data_dir, config.image_dir, config.image_size,
                      config.grayscale, config.stream)


def load_split(expression, dataset="mnist", data_dir=None, **options):
    """(uint8 images [N, H, W, C], labels or None) of a split, loaded whole (see `open_split`)."""
    return open_split(expression, dataset, data_dir, **options).load_all()
