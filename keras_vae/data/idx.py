"""MNIST-style IDX files (train-images-idx3-ubyte[.gz], t10k-...) loaded whole into memory.

Splits are `train` and `test`, sliced with the grammar of `keras_vae.data.splits`.
"""

import gzip
import struct
from pathlib import Path

import numpy as np

from keras_vae.data.splits import windows
from keras_vae.errors import UserError

IDX_PREFIXES = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


def _read_idx(path, magic):
    """Reads an IDX file (optionally gzip-compressed) of unsigned bytes into an array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise UserError(f"Cannot read {path}: {error}. Is the file complete? Download it again.")
    if len(raw) < 8:
        raise UserError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise UserError(
            f"{path} is not an IDX file of unsigned bytes with the expected shape: its magic number "
            f"is {found}, expected {magic} ({'images' if magic == _IMAGE_MAGIC else 'labels'})."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise UserError(
            f"{path} is truncated or corrupt: its header gives dimensions {dims} ({expected} bytes "
            f"of data) but it holds {len(raw) - header} bytes. Download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(data_dir, split_name, kind):
    prefix = IDX_PREFIXES.get(split_name)
    if prefix is None:
        raise UserError(
            f"IDX files hold the splits {', '.join(IDX_PREFIXES)}; got split {split_name!r}."
        )
    name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_idx_split(data_dir, split_name):
    """Loads one whole split from IDX files: (images [N, H, W, 1] uint8, labels [N] or None)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} is not a folder. Received: data_dir={str(data_dir)!r}.")
    image_file = _find_idx(data_dir, split_name, "images")
    if image_file is None:
        prefix = IDX_PREFIXES[split_name]
        raise UserError(
            f"No image file for split {split_name!r} in {data_dir}: expected "
            f"{prefix}-images-idx3-ubyte or {prefix}-images-idx3-ubyte.gz."
        )
    images = _read_idx(image_file, _IMAGE_MAGIC)
    if images.ndim != 3:
        raise UserError(f"{image_file} should hold [N, height, width] images; has shape {images.shape}.")
    label_file = _find_idx(data_dir, split_name, "labels")
    labels = None
    if label_file is not None:
        labels = _read_idx(label_file, _LABEL_MAGIC)
        if labels.shape != images.shape[:1]:
            raise UserError(
                f"{label_file} holds {labels.size} labels but {image_file} holds {len(images)} images."
            )
    return images[..., np.newaxis], labels


def load_split(expression, data_dir):
    """Loads the images [N, H, W, 1] uint8 and labels (or None) of a split expression from IDX files.

    Returns:
        (images, labels or None, class names or None): the classes are "0", "1", ... up to the
        largest label in the whole files read, so that every slice of them has the same classes.

    Raises:
        UserError: for an unparsable split, or a missing or corrupt file.
    """
    cache = {}

    def size_of(name):
        if name not in cache:
            cache[name] = load_idx_split(data_dir, name)
        return len(cache[name][0])

    pieces = [(cache[name][0][window], None if cache[name][1] is None else cache[name][1][window])
              for name, window in windows(expression, size_of)]
    images = np.concatenate([p[0] for p in pieces])
    if any(p[1] is None for p in pieces):
        return images, None, None
    largest = max(int(np.max(labels)) for _, labels in cache.values() if labels.size)
    return images, np.concatenate([p[1] for p in pieces]), tuple(str(label) for label in range(largest + 1))
