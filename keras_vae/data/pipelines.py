"""`tf.data` pipelines: the stateless training order, its slicing over workers, evaluation batches.

Every training data source (in memory, image files, TFDS records) builds its batches here, so all
follow `keras_vae.data.protocols.TrainingSource` the same way.
"""

import numpy as np
import tensorflow as tf

from keras_vae.data.binarization import binarize
from keras_vae.errors import UserError
from keras_vae.images import to_uint8, to_unit_interval

PREFETCH_BATCHES = 4
_ENDLESS = np.iinfo(np.int64).max


LABELS_HELP = ("a folder of class subfolders (`image_dir`), IDX files with their label files "
               "(train-labels-idx1-ubyte.gz, t10k-labels-idx1-ubyte.gz), or a TFDS data set with a "
               "'label' feature")


def require_labels(labels, description):
    """`labels`, unless they are None: then a `UserError` saying the split has none and where to find some.

    Args:
        labels: The split's labels, or None.
        description: The split, for the message (its `description`).
    """
    if labels is None:
        raise UserError(f"This split has no labels ({description}), but a class-conditional model needs "
                        f"them: use {LABELS_HELP}.")
    return labels


def label_batches(labels, indices):
    """The labels [batch] of the examples `indices` from a table of every example's label, as int32."""
    return tf.gather(tf.cast(labels, tf.int32), indices)


def steps_per_epoch(count, batch_size):
    """The number of full batches in an epoch of `count` images.

    Raises:
        UserError: if there is not even one.
    """
    if count < batch_size:
        raise UserError(
            f"The training split has {count} images, fewer than one batch of batch_size={batch_size}; "
            "use a smaller `batch_size` or a larger split."
        )
    return count // batch_size


def to_model_input(images, indices, binarize_mode="none", seed=0, epoch=0, uint8=False):
    """uint8 images [batch, H, W, C] as the model takes them: float32 in [0, 1], maybe binarized.

    The one place that fixes the dtype handed to the model. With `uint8` (training batches) they stay
    uint8, binarized pixels 0 or 255: a quarter of float32's bytes to copy to a GPU, and
    `VAE.train_step` scales them to [0, 1] on the device.
    """
    if uint8 and binarize_mode == "none":
        return images
    pixels = binarize(to_unit_interval(images), indices, binarize_mode, seed, epoch)
    return to_uint8(pixels) if uint8 else pixels


def epoch_order(count, seed, epoch):
    """The order of the `count` images in `epoch`: a stateless permutation of (seed, epoch)."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(count), seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    )


def index_batches(count, batch_size, seed, first_epoch=0, first_step=0):
    """Endless global batches (indices [batch_size], epoch) of the stateless order, from a given step.

    Skipping touches indices only, so a resumed run loads none of the images it skips.
    """

    def epoch_batches(epoch):
        batches = tf.data.Dataset.from_tensor_slices(epoch_order(count, seed, epoch))
        return batches.batch(batch_size, drop_remainder=True).map(lambda index: (index, epoch))

    return tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch_batches).skip(first_step)


def local_batches(dataset, batch_size, input_context=None):
    """This input pipeline's slice of each global batch of `dataset`, in per-replica batches.

    Elements are tuples of batched tensors and, last, the epoch. Without an input context, `dataset`
    is returned as it is.
    """
    if input_context is None or input_context.num_replicas_in_sync == 1:
        return dataset
    pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
    if batch_size % pipelines:
        raise UserError(f"The global batch must split evenly over the {pipelines} workers. Received: "
                        f"batch_size={batch_size}.")
    per_pipeline = batch_size // pipelines
    per_replica = input_context.get_per_replica_batch_size(batch_size)
    pieces = per_pipeline // per_replica

    def split(*element):
        *batched, epoch = element
        mine = [b[pipeline * per_pipeline:(pipeline + 1) * per_pipeline] for b in batched]
        cut = [tf.reshape(b, [pieces, per_replica, *b.shape[1:]]) for b in mine]
        return tf.data.Dataset.from_tensor_slices((*cut, tf.fill([pieces], epoch)))

    return dataset.flat_map(split)


def training_dataset(images, batch_size, seed, first_epoch=0, binarize_mode="none", first_step=0,
                     input_context=None, labels=None):
    """Full batches of shuffled in-memory uint8 images, one epoch after another, without end.

    The order of each epoch, and its binarization, are stateless functions of (seed, epoch), so any
    epoch can be replayed exactly; every epoch has len(images) // batch_size batches (the remainder
    differs per epoch). See `keras_vae.data.binarize` for `binarize_mode`. With `labels` (integers
    [N]) the batches are (images, int32 labels), the labels of the same examples.
    """
    images = tf.constant(images)
    indices = index_batches(int(images.shape[0]), batch_size, seed, first_epoch, first_step)
    table = None if labels is None else tf.constant(labels)

    def load(index, epoch):
        batch = to_model_input(tf.gather(images, index), index, binarize_mode, seed, epoch, uint8=True)
        return batch if table is None else (batch, label_batches(table, index))

    dataset = local_batches(indices, batch_size, input_context).map(load)
    return endless(with_options(dataset.prefetch(PREFETCH_BATCHES), autotune=False))


def endless(dataset):
    """`dataset`, declared endless, so that `VAE.fit` can refuse it without `steps_per_epoch` instead
    of running its first epoch forever."""
    return dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def evaluation_dataset(images, batch_size, binarize_mode="none", labels=None):
    """Every in-memory image once, in order, in [0, 1]; the last batch may be partial.

    Any binarization is the static one, so that every evaluation sees the same data. With `labels`
    (integers [N]) the batches are (images, int32 labels).
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, tf.range(len(images)))).batch(batch_size)
    if labels is not None:
        table = tf.constant(labels)
        dataset = dataset.map(lambda batch, index: (batch, index, label_batches(table, index)))
    return finish_evaluation(dataset, binarize_mode, cache=True, autotune=False)


def finish_evaluation(batches, binarize_mode, cache=False, autotune=True):
    """Maps batches of (uint8 images, indices[, labels]) to model input with the static draw (and the
    labels), then prefetches."""
    mode = "none" if binarize_mode == "none" else "static"

    def model_input(batch, index, *labels):
        pixels = to_model_input(batch, index, mode)
        return (pixels, *labels) if labels else pixels

    dataset = batches.map(model_input)
    if cache:
        dataset = dataset.cache()
    return with_options(dataset.prefetch(PREFETCH_BATCHES), autotune=autotune)


def with_options(dataset, autotune=True):
    """Deterministic order; sharding of whole-pipeline datasets by data, never by files.

    Args:
        autotune: Off for in-memory data, where a batch is one gather and there is nothing to tune
            (and the autotuner's model thread made deleting the endless training iterator block at
            the end of training: docs/performance.md). On where files are decoded in parallel.
    """
    options = tf.data.Options()
    # Files hold no fixed part of a global batch: each worker takes its part of every global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    options.autotune.enabled = autotune
    return dataset.with_options(options)
