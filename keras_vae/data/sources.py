"""Opening a split of any kind of data, and finding the pictures that cannot be used.

IDX files and small TFDS data sets load into memory; folders of pictures and large TFDS data sets
stream from their files (`stream="auto"`). Every split follows `keras_vae.data.protocols.Split`.
"""

import contextlib

import tensorflow as tf

from keras_vae.data import idx, tfds_data
from keras_vae.data.folders import ImageFolder
from keras_vae.data.memory import InMemorySplit
from keras_vae.data.tfds_data import TfdsRecords
from keras_vae.errors import UserError

# The errors a decoding or file-reading op raises for a bad or missing picture.
PICTURE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
                  tf.errors.DataLossError)


def open_split(expression, dataset="mnist", data_dir=None, image_dir=None, image_size=None,
               grayscale=False, stream="auto"):
    """Opens a split of a folder of pictures (`image_dir`), IDX files (`data_dir`) or a TFDS data set.

    Args:
        expression: The split: TFDS's syntax for TFDS data sets; `train`/`test` with slices for IDX
            files; `train` with slices for a folder (see `keras_vae.data.splits`).
        dataset: TFDS data set name, used when neither folder is given.
        image_size: (height, width) to resize pictures to (folders and streamed TFDS data sets).
        grayscale: Convert colour pictures to grey (folders and streamed TFDS data sets).
        stream: For TFDS data sets: "on", "off", or "auto" (see `tfds_data.streams_by_default`).

    Returns:
        A `keras_vae.data.protocols.Split`.

    Raises:
        UserError: for anything wrong with the data or the arguments.
    """
    if image_dir is not None:
        if stream == "off":
            raise UserError("Folders of pictures are always streamed. Received: "
                            f"image_dir={str(image_dir)!r} with stream='off'; leave out stream='off'.")
        return ImageFolder(image_dir, expression, image_size, grayscale)
    if data_dir is not None:
        if image_size is not None or grayscale or stream == "on":
            raise UserError("IDX files (`data_dir`) are read into memory as they are: `image_size`, "
                            "`grayscale` and stream='on' work with `image_dir` and TFDS data sets.")
        images, labels, classes = idx.load_split(expression, data_dir)
        return InMemorySplit(images, labels, f"IDX files in {data_dir}, split {expression!r}", classes)
    builder = tfds_data.prepared_builder(dataset, expression)
    streamed = stream == "on" or (
        stream == "auto" and tfds_data.streams_by_default(builder, expression, image_size, grayscale))
    if streamed:
        return TfdsRecords(builder, expression, image_size, grayscale)
    if image_size is not None or grayscale:
        raise UserError("`image_size` and `grayscale` need the streamed path: leave out stream='off'.")
    images, labels = tfds_data.load_in_memory(builder, expression)
    return InMemorySplit(images, labels, f"TFDS {dataset} {expression}", tfds_data.class_names(builder))


def split_of(options, expression):
    """`open_split` with the data options of a command's config (a `TrainConfig`, `EvaluateConfig`)."""
    return open_split(expression, options.dataset, options.data_dir, options.image_dir, options.image_size,
                      options.grayscale, options.stream)


def load_split(expression, dataset="mnist", data_dir=None, **options):
    """(uint8 images [N, H, W, C], labels or None) of a split, loaded whole (see `open_split`)."""
    return open_split(expression, dataset, data_dir, **options).load_all()


def bad_picture_list(bad):
    """The lines of a message listing (name, what is wrong) pairs."""
    return "".join(f"\n  {message}" for _, message in bad)


@contextlib.contextmanager
def naming_bad_pictures(*splits, then=""):
    """Turns an input pipeline error caused by pictures of `splits` into a `UserError` naming them.

    The decoding ops' errors do not say which picture failed, so this reads the splits once more
    (`find_bad`); errors that no picture explains pass through unchanged.

    Args:
        splits: The splits being read.
        then: What happened and what to do, added to the message (the caller knows).
    """
    try:
        yield
    except PICTURE_ERRORS:
        messages = [message for split in splits for message in split.find_bad()]
        if not messages:
            raise
        raise UserError("Some pictures cannot be used:\n  " + "\n  ".join(messages)
                        + (f"\n{then}" if then else "")) from None
