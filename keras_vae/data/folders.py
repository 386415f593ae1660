"""A folder of pictures as a data set: listed once, split by name, decoded as it is read.

The pictures are the folder's PNG, JPEG, GIF and BMP files, or those of its subfolders (one level),
whose names are then the class labels. The folder is one split, `train`, sliced with the TFDS syntax
(`train[:90%]`, `train[90%:]`) over the files in a fixed pseudo-random order (sorted by a hash of
their path), so both parts hold every class and the same split holds the same files in every run.
"""

import os
import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae.data.decode import Decoding, decode, diagnose, native_shape
from keras_vae.data.splits import windows
from keras_vae.data.streams import StreamedSplit
from keras_vae.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
SPLIT_NAME = "train"


def _pictures(folder):
    """The picture files directly in `folder`, as names, and how many other files it holds."""
    pictures, others = [], 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):  # hidden, e.g. macOS's "._photo.jpg" metadata files
                continue
            if entry.name.lower().endswith(EXTENSIONS):
                pictures.append(entry.name)
            elif not entry.is_dir():
                others += 1
    return pictures, others


def list_pictures(folder):
    """Lists the pictures of `folder`: (relative paths, labels or None, class names, ignored files).

    Raises:
        UserError: if there is no such folder, or no picture in it or in its subfolders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder. Received: image_dir={str(folder)!r}.")
    top, ignored = _pictures(folder)
    classes = sorted(entry.name for entry in os.scandir(folder)
                     if entry.is_dir() and not entry.name.startswith("."))
    paths, labels, named = [], [], []
    for name in classes:
        inside, others = _pictures(folder / name)
        ignored += others
        if inside:
            named.append(name)
            paths += [f"{name}/{picture}" for picture in inside]
            labels += [len(named) - 1] * len(inside)
    if top and paths:
        raise UserError(
            f"{folder} holds pictures both directly and in subfolders ({', '.join(named[:3])}...): put "
            "them all in class subfolders, or all directly in the folder."
        )
    if not top and not paths:
        raise UserError(
            f"{folder} holds no pictures ({', '.join(EXTENSIONS)}), neither directly nor in "
            "subfolders one level down."
        )
    if top:
        return top, None, [], ignored
    return paths, np.array(labels, np.int64), named, ignored


def _hash_order(paths):
    # crc32 of the relative path: a fixed order that mixes the classes and is the same on every machine.
    return sorted(range(len(paths)), key=lambda i: (zlib.crc32(paths[i].encode()), paths[i]))


def _first_shape(paths):
    """(height, width, channels) of the first of `paths` that decodes: it sets every picture's shape.

    Pictures before it that fail are left for `ImageFolder.bad_pictures` to report, with all others.

    Raises:
        UserError: the first picture's error, when none of them decodes.
    """
    first_error = None
    for path in paths:
        try:
            return native_shape(Path(path).read_bytes(), path)
        except OSError as error:
            first_error = first_error or UserError(f"Cannot read {path}: {error.strerror}.")
        except UserError as error:
            first_error = first_error or error
    raise first_error


class ImageFolder(StreamedSplit):
    """A split of a folder of pictures, streamed from the files.

    Args:
        folder: The folder.
        expression: The split, e.g. `train` or `train[:90%]`.
        image_size: (height, width) to resize every picture to, or None to keep their own size.
        grayscale: Convert colour pictures to grey.
        skip: Paths of pictures to leave out of the split (see `without`).
    """

    def __init__(self, folder, expression, image_size=None, grayscale=False, skip=()):
        self.folder, self.expression = folder, expression
        self.image_size, self.grayscale = image_size, grayscale
        relative, labels, classes, ignored = list_pictures(folder)
        self.classes = tuple(classes) if labels is not None else None  # the subfolders' names
        order = _hash_order(relative)
        chosen = []
        for name, window in windows(expression, lambda name: len(relative)):
            if name != SPLIT_NAME:
                raise UserError(
                    f"An image folder is one split, {SPLIT_NAME!r}; got {name!r} in {expression!r}. "
                    "Slice it, e.g. 'train[:90%]' for training and 'train[90%:]' for validation."
                )
            chosen += order[window]
        # Skipping after slicing keeps every other picture in the part of the split it was in.
        skip, sliced = set(skip), len(chosen)
        chosen = [i for i in chosen if os.path.join(folder, relative[i]) not in skip]
        if not chosen:
            raise UserError(f"Split {expression!r} of {folder} is empty: check the slice bounds.")
        self.paths = [os.path.join(folder, relative[i]) for i in chosen]
        self.labels = None if labels is None else labels[chosen]
        height, width, channels = _first_shape(self.paths)
        if image_size is not None:
            height, width = image_size
        decoding = Decoding(height, width, 1 if grayscale else channels, image_size is not None, grayscale)
        extra = f", ignoring {ignored} other files" if ignored else ""
        classes = f" in {len(self.classes)} class folders" if self.classes else ""
        left_out = f", leaving out {sliced - len(chosen)}" if sliced > len(chosen) else ""
        super().__init__(len(chosen), decoding,
                         f"streamed from {len(chosen)} picture files{classes} in {folder}{extra}{left_out}")
        self._paths = tf.constant(self.paths)

    def payloads(self, indices):
        return tf.gather(self._paths, indices)

    def load_one(self, index, path, check_only=False):
        return decode(tf.io.read_file(path), path, self.decoding, check_only)

    def name_of(self, index, path):
        return path.decode()

    def check_one(self, index, path):
        name = path.decode()
        try:
            contents = Path(name).read_bytes()
        except OSError as error:
            return f"cannot read {name}: {error.strerror}"
        return diagnose(contents, name, self.decoding)

    def without(self, names):
        """The split without the pictures at the paths `names`; the others keep their places."""
        return ImageFolder(self.folder, self.expression, self.image_size, self.grayscale, skip=names)

    def load_labels(self, count):
        return None if self.labels is None else self.labels[:count]
