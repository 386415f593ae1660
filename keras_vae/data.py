"""Image data: IDX files or TensorFlow Datasets into memory, then `tf.data` pipelines.

Both sources take TFDS split expressions (`train`, `test[:8000]`, `test[80%:]`, `train+test`) and
return uint8 arrays of shape [N, height, width, channels]; pixels are scaled to [0, 1] in the pipeline.
"""

import gzip
import re
import socket
import struct
import urllib.parse
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae.binarize import binarize
from keras_vae.errors import UserError

IDX_PREFIXES = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_SLICE = re.compile(r"^(?P<name>\w+)(\[(?P<start>-?\d+%?)?:(?P<end>-?\d+%?)?\])?$")
DOWNLOAD_PROBE_SECONDS = 5.0
PREFETCH_BATCHES = 4


def parse_split(expression):
    """Parses a split expression into a list of (name, start, end) with start/end as written.

    Raises:
        UserError: if the expression is not of the TFDS form `name[start:end]` joined by `+`.
    """
    parts = []
    for part in expression.replace(" ", "").split("+"):
        match = _SLICE.match(part)
        if not match:
            raise UserError(
                f"Cannot parse split {expression!r}: use the TFDS slicing syntax, e.g. 'train', "
                "'test[:8000]', 'test[8000:]', 'train[10%:]' or 'train+test'."
            )
        parts.append((match["name"], match["start"], match["end"]))
    return parts


def _bound(text, size):
    if text is None:
        return None
    if text.endswith("%"):
        return int(round(size * int(text[:-1]) / 100))
    return int(text)


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
        raise UserError(f"--data-dir {data_dir} is not a folder.")
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


def _check_downloadable(builder):
    """Fails fast, with a way out, when the data set is not on disk and cannot be downloaded."""
    hosts = {urllib.parse.urlparse(url).hostname for url in (builder.url_infos or {})}
    for host in sorted(h for h in hosts if h):
        try:
            socket.create_connection((host, 443), timeout=DOWNLOAD_PROBE_SECONDS).close()
        except OSError as error:
            raise UserError(
                f"Cannot download the {builder.name!r} data set: {host} is unreachable ({error}). "
                "Without network access, read local IDX files instead, e.g.\n"
                "  python train.py --data-dir ../shared/data/mnist "
                "--train-split 'test[:8000]' --val-split 'test[8000:]'"
            )


def load_tfds_split(dataset, split):
    """Loads a split of a TFDS image data set into memory: (images uint8 [N, H, W, C], labels)."""
    import tensorflow_datasets as tfds  # slow to import; only needed on this path

    try:
        builder = tfds.builder(dataset)
    except Exception as error:  # TFDS raises several types for unknown names
        raise UserError(f"Unknown TensorFlow Datasets data set {dataset!r}: {error}")
    if "image" not in builder.info.features:
        raise UserError(f"{dataset!r} has no 'image' feature; choose an image data set.")
    if not builder.is_prepared():
        _check_downloadable(builder)
        builder.download_and_prepare()
    try:
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    except (ValueError, KeyError, AssertionError) as error:
        raise UserError(f"Bad split {split!r} for {dataset!r}: {error}")
    return arrays["image"], arrays.get("label")


def load_split(expression, dataset="mnist", data_dir=None):
    """Loads the images and labels (or None) of a split expression from IDX files or TFDS.

    Raises:
        UserError: for an unparsable or empty split, or a missing or corrupt file.
    """
    parts = parse_split(expression)
    if data_dir is None:
        images, labels = load_tfds_split(dataset, expression)
    else:
        cache, pieces = {}, []
        for name, start, end in parts:
            if name not in cache:
                cache[name] = load_idx_split(data_dir, name)
            full_images, full_labels = cache[name]
            window = slice(_bound(start, len(full_images)), _bound(end, len(full_images)))
            pieces.append((full_images[window], None if full_labels is None else full_labels[window]))
        images = np.concatenate([p[0] for p in pieces])
        labels = None if any(p[1] is None for p in pieces) else np.concatenate([p[1] for p in pieces])
    if len(images) == 0:
        raise UserError(f"Split {expression!r} is empty: check the slice bounds.")
    return images, labels


def steps_per_epoch(count, batch_size):
    """The number of full batches in an epoch of `count` images.

    Raises:
        UserError: if there is not even one.
    """
    if count < batch_size:
        raise UserError(
            f"The training split has {count} images, fewer than one batch of {batch_size}; use a "
            "smaller --batch-size or a larger split."
        )
    return count // batch_size


def _to_unit_interval(images):
    return tf.cast(images, tf.float32) / 255.0


def training_dataset(images, batch_size, seed, first_epoch=0, binarize_mode="none"):
    """Full batches of shuffled images in [0, 1], one epoch after another, without end.

    The order of each epoch, and its binarization, are stateless functions of (seed, epoch), so any
    epoch can be replayed exactly; every epoch has len(images) // batch_size batches (the remainder
    differs per epoch). See `keras_vae.binarize` for `binarize_mode`.
    """
    images = tf.constant(images)
    count = int(images.shape[0])

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.cast(seed, tf.int64), epoch])
        )
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)
        return batches.map(lambda index: (index, epoch))

    def load(index, epoch):
        return binarize(_to_unit_interval(tf.gather(images, index)), index, binarize_mode, seed, epoch)

    dataset = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_batches)
    return _with_options(dataset.map(load).prefetch(PREFETCH_BATCHES))


def evaluation_dataset(images, batch_size, binarize_mode="none"):
    """Every image once, in order, in [0, 1]; the last batch may be partial.

    Any binarization is the static one, so that every evaluation sees the same data.
    """
    mode = "none" if binarize_mode == "none" else "static"
    dataset = tf.data.Dataset.from_tensor_slices((images, tf.range(len(images)))).batch(batch_size)
    dataset = dataset.map(lambda batch, index: binarize(_to_unit_interval(batch), index, mode))
    return _with_options(dataset.cache().prefetch(PREFETCH_BATCHES))


def _with_options(dataset):
    options = tf.data.Options()
    # In-memory data has no files to shard by; each worker takes its part of every global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    # The data is in memory and a batch is one gather: nothing to tune. The autotuner's model thread
    # also made deleting the endless training iterator block for ~45 s at the end of training.
    options.autotune.enabled = False
    return dataset.with_options(options)


class InMemoryImages:
    """A training data source over uint8 images held in memory, for `keras_vae.training.Trainer`.

    Args:
        images: uint8 array [N, H, W, C].
        batch_size: Global batch size.
        seed: Seed of each epoch's order and of dynamic binarization.
        binarize_mode: "none", "static" or "dynamic" (see `keras_vae.binarize`).

    Raises:
        UserError: if there is not one full batch.
    """

    def __init__(self, images, batch_size, seed=0, binarize_mode="none"):
        self.steps_per_epoch = steps_per_epoch(len(images), batch_size)
        self.image_shape = tuple(images.shape[1:])
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.binarize_mode = binarize_mode

    def dataset(self, first_epoch=0, first_step=0):
        """Endless global batches in [0, 1] from step `first_step` of epoch `first_epoch` on.

        For `Model.fit`, pass `steps_per_epoch=self.steps_per_epoch`: Keras then keeps one iterator
        over the epochs, and each epoch sees the same batches as under the `Trainer`.
        """
        dataset = training_dataset(self.images, self.batch_size, self.seed, first_epoch, self.binarize_mode)
        # Declared endless, so that `VAE.fit` can refuse it without `steps_per_epoch` instead of
        # running its first epoch forever.
        endless = tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)
        return dataset.skip(first_step).apply(endless)
