"""TensorFlow Datasets image data sets: small ones into memory, large ones streamed from their files.

Split expressions are TFDS's own (`train[:0.5%]`, `train[:4shard]`, `train+test`), parsed by TFDS.
"""

import math
import socket
import urllib.parse
import urllib.request

import numpy as np
import tensorflow as tf

from keras_vae.data.decode import Decoding, decode, diagnose, native_shape
from keras_vae.data.streams import StreamedSplit
from keras_vae.errors import UserError

DOWNLOAD_PROBE_SECONDS = 5.0
# Splits up to this size decoded (uint8) load into memory with --stream auto: MNIST's 60,000 images
# are 47 MB, CIFAR-10's 50,000 are 154 MB; CelebA's 162,770 are 19 GB.
IN_MEMORY_BYTES = 1 << 30
# Records shuffled together when streaming. TFDS writes every data set's records in a shuffled order
# when it prepares it, so a shuffle within windows of the file order gives well-mixed batches.
SHUFFLE_WINDOW = 10_000
READ_BATCH = 1024
OFFLINE_HELP = (
    "Without network access, read your own folder of IDX files instead (data_dir=DIR, holding "
    "train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz, ...; e.g. with train_split='test[:8000]' and "
    "val_split='test[8000:]'), or a folder of pictures (image_dir=DIR)."
)


def _probe_address(host):
    """Where a download from `host` connects first: its HTTPS proxy (HTTPS_PROXY), or the host itself."""
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return parsed.hostname, parsed.port or 80, f" through the proxy {parsed.hostname}"
    return host, 443, ""


def _check_downloadable(builder):
    """Fails fast, with a way out, when the data set is not on disk and cannot be downloaded."""
    hosts = {urllib.parse.urlparse(url).hostname for url in (builder.url_infos or {})}
    for host in sorted(h for h in hosts if h):
        address, port, via = _probe_address(host)
        try:
            socket.create_connection((address, port), timeout=DOWNLOAD_PROBE_SECONDS).close()
        except OSError as error:
            raise UserError(f"Cannot download the {builder.name!r} data set: {host} is unreachable{via} "
                            f"({error}). {OFFLINE_HELP}")


def prepared_builder(dataset, split):
    """The TFDS builder of `dataset`, prepared (downloaded if need be), after checking `split`.

    Raises:
        UserError: for an unknown data set, one without images, a split TFDS cannot parse, or no
            way to download it.
    """
    import tensorflow_datasets as tfds  # slow to import; only needed on this path

    try:
        tfds.core.ReadInstruction.from_spec(split)
    except (ValueError, AssertionError) as error:
        raise UserError(f"Cannot parse split {split!r}: {error}. Use the TFDS split syntax, e.g. 'train', "
                        "'test[:8000]', 'train[10%:]', 'train[:4shard]' or 'train+test'.")
    try:
        builder = tfds.builder(dataset)
    except Exception as error:  # TFDS raises several types for unknown names
        raise UserError(f"Unknown TensorFlow Datasets data set {dataset!r}: {error}")
    if "image" not in builder.info.features:
        raise UserError(f"{dataset!r} has no 'image' feature; choose an image data set.")
    if not builder.is_prepared():
        _check_downloadable(builder)
        builder.download_and_prepare()
    return builder


def _read(builder, split, **options):
    try:
        return builder.as_dataset(split=split, **options)
    except (ValueError, KeyError, AssertionError) as error:
        raise UserError(f"Bad split {split!r} for {builder.name!r}: {error}")


def class_names(builder):
    """The names of the data set's classes (its 'label' feature's, a `tfds.features.ClassLabel`), or
    None when it has no labels or they are not a ClassLabel."""
    if "label" not in builder.info.features:
        return None
    names = getattr(builder.info.features["label"], "names", None)
    return tuple(names) if names else None


def split_size(builder, split):
    """The number of examples of `split`, from the data set's metadata when it has them."""
    if builder.info.splits:
        try:
            return builder.info.splits[split].num_examples
        except (ValueError, KeyError, AssertionError) as error:
            raise UserError(f"Bad split {split!r} for {builder.name!r}: {error}")
    # No split metadata (e.g. under tfds.testing.mock_data): count the records, without decoding.
    import tensorflow_datasets as tfds

    records = _read(builder, split, decoders={"image": tfds.decode.SkipDecoding()})
    return int(records.reduce(np.int64(0), lambda count, _: count + 1))


def load_in_memory(builder, split):
    """(uint8 images [N, H, W, C], labels or None) of a split, read in batches of READ_BATCH.

    Not `batch_size=-1`: that builds one tensor of the whole split in the graph, and TensorFlow
    refuses constants over 2 GB.
    """
    if None in builder.info.features["image"].shape:
        raise UserError(f"The images of {builder.name!r} differ in size; stream them (leave out "
                        "stream='off') with image_size=(HEIGHT, WIDTH).")
    images, labels = [], []
    for batch in _read(builder, split, batch_size=READ_BATCH).as_numpy_iterator():
        images.append(batch["image"])
        labels.append(batch.get("label"))
    if not images:
        raise UserError(f"Split {split!r} of {builder.name!r} is empty: check the slice bounds.")
    return np.concatenate(images), None if labels[0] is None else np.concatenate(labels)


def streams_by_default(builder, split, image_size, grayscale):
    """Whether --stream auto streams `split`: when its decoded images would not fit IN_MEMORY_BYTES,
    their sizes differ, or they are to be resized or converted."""
    shape = builder.info.features["image"].shape
    if image_size is not None or grayscale or None in shape:
        return True
    return split_size(builder, split) * math.prod(shape) > IN_MEMORY_BYTES


class TfdsRecords(StreamedSplit):
    """A split of a prepared TFDS data set, streamed from its record files and decoded in parallel.

    Each epoch reads the records in file order and shuffles them in windows of SHUFFLE_WINDOW, each
    window with a stateless key of (seed, epoch, window); a resumed run skips the records of the steps
    done without decoding them. Under multi-worker training every worker reads every record (the
    encoded bytes) and decodes only its slice of each global batch.
    """

    def __init__(self, builder, split, image_size=None, grayscale=False):
        self.builder, self.split = builder, split
        count = split_size(builder, split)
        if count == 0:
            raise UserError(f"Split {split!r} of {builder.name!r} is empty: check the slice bounds.")
        height, width, channels = builder.info.features["image"].shape
        if None in (height, width) and image_size is None:
            first = next(iter(self._records().take(1)))["image"].numpy()
            height, width, _ = native_shape(first, f"the first image of {builder.name} {split}")
        if image_size is not None:
            height, width = image_size
        channels = 1 if grayscale or channels == 1 else 3
        super().__init__(count, Decoding(height, width, channels, image_size is not None, grayscale),
                         f"streamed from the TFDS record files of {builder.name} {split}")

    @property
    def classes(self):
        """The 'label' feature's class names; for labels without names, "0" up to the largest label."""
        names = class_names(self.builder)
        if names is None and "label" in self.builder.info.features:
            names = tuple(str(label) for label in range(int(np.max(self.label_table())) + 1))
        return names

    def _records(self):
        import tensorflow_datasets as tfds

        # No auto-caching: a streamed split is one that should not be held in memory.
        return _read(self.builder, self.split, shuffle_files=False,
                     decoders={"image": tfds.decode.SkipDecoding()},
                     read_config=tfds.ReadConfig(try_autocache=False))

    def in_order(self):
        return self._records().enumerate().map(lambda index, record: (index, record["image"]))

    def global_batches(self, batch_size, seed, first_epoch, first_step):
        def shuffled(epoch):
            def shuffle_window(index, payload):
                key = tf.random.experimental.stateless_fold_in(
                    tf.stack([tf.cast(seed, tf.int64), epoch]), index[0] // SHUFFLE_WINDOW)
                order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(index)[0]), key)
                return tf.gather(index, order), tf.gather(payload, order)

            windows = self.in_order().batch(SHUFFLE_WINDOW).map(shuffle_window).unbatch()
            return windows.batch(batch_size, drop_remainder=True).map(lambda i, p: (i, p, epoch))

        epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
        return epochs.flat_map(shuffled).skip(first_step)

    def load_one(self, index, payload, check_only=False):
        return decode(payload, tf.strings.format("record {} of the split", index), self.decoding, check_only)

    def name_of(self, index, payload):
        return f"record {index} of {self.builder.name} {self.split}"

    def bad_pictures(self):
        # TFDS encodes every record's image itself when it prepares a data set, so there is nothing
        # to find before training that would justify a full decoding pass over a large data set.
        return []

    def without(self, names):
        if names:
            raise ValueError(f"A TFDS split cannot leave out records. Received: names={names!r}.")
        return self

    def check_one(self, index, payload):
        return diagnose(payload, f"record {index} of {self.builder.name} {self.split}", self.decoding)

    def load_labels(self, count):
        if "label" not in self.builder.info.features:
            return None
        labels = self._records().take(count).map(lambda record: record["label"]).batch(READ_BATCH)
        return np.concatenate(list(labels.as_numpy_iterator()))
