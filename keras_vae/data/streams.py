"""Data sets streamed from encoded pictures (files, TFDS records), decoded in parallel as they are read.

Subclasses say what to read for picture i (`payloads`, or `in_order` and `global_batches` when the
pictures can only be read in order) and how to load one (`load_one`, `check_one`, `name_of`,
`load_labels`); this class makes the training source and the evaluation batches, and finds the
pictures that fail, in one parallel pass.
"""

import numpy as np
import tensorflow as tf

from keras_vae.data import pipelines

MAX_NAMED = 5
LOAD_BATCH = 256
CHECK_BATCH = 4096


class StreamedSplit:
    """One split of pictures, streamed.

    Args:
        count: Number of pictures.
        decoding: The `keras_vae.data.decode.Decoding` every picture goes through.
        description: How it is read, for the log.
    """

    def __init__(self, count, decoding, description):
        self.count = count
        self.decoding = decoding
        self.image_shape = decoding.image_shape
        self.description = description

    def payloads(self, indices):
        """What `load_one` reads for the pictures `indices` (a tensor of any shape), when they can be
        read by index."""
        raise NotImplementedError

    def in_order(self):
        """Every (index, payload), in order."""
        return tf.data.Dataset.range(self.count).map(lambda index: (index, self.payloads(index)))

    def global_batches(self, batch_size, seed, first_epoch, first_step):
        """Endless global batches (indices, payloads, epoch), from step `first_step` of `first_epoch`.

        By default the order is `pipelines.index_batches`, a stateless permutation per epoch, as for
        images in memory; the payloads of skipped steps are never read.
        """
        indices = pipelines.index_batches(self.count, batch_size, seed, first_epoch, first_step)
        return indices.map(lambda index, epoch: (index, self.payloads(index), epoch))

    def load_all(self, limit=None):
        """(uint8 images [N, H, W, C], labels or None) of the first `limit` pictures (default: all)."""
        count = self.count if limit is None else min(limit, self.count)
        batches = self._decoded(self.in_order().take(count).batch(LOAD_BATCH), LOAD_BATCH, False)
        images = np.concatenate([images for images, _ in batches.as_numpy_iterator()])
        return images, self.load_labels(count)

    def label_table(self):
        """Every picture's label, int32 [count], read once (for TFDS records, one pass over their
        encoded bytes, decoding no image).

        Raises:
            UserError: if the split has no labels.
        """
        if getattr(self, "_label_table", None) is None:
            labels = pipelines.require_labels(self.load_labels(self.count), self.description)
            self._label_table = np.asarray(labels, np.int32)
        return self._label_table

    def training_source(self, batch_size, seed, binarize_mode="none", labels=False):
        return StreamedImages(self, batch_size, seed, binarize_mode, self.label_table() if labels else None)

    def evaluation_dataset(self, batch_size, binarize_mode="none", labels=False):
        """Every picture once, in order, in [0, 1] (with int32 labels); the last batch may be partial."""
        batches = self._decoded(self.in_order().batch(batch_size), batch_size, drop_remainder=False)
        if labels:
            table = tf.constant(self.label_table())
            batches = batches.map(
                lambda images, index: (images, index, pipelines.label_batches(table, index)))
        return pipelines.finish_evaluation(batches, binarize_mode)

    def _decoded(self, batches, batch_size, drop_remainder=True):
        """Batches of (indices, payloads, ...) -> (uint8 images, indices, ...), decoded in parallel.

        Unbatched and batched again (`batch_size`: the incoming batches' size), so that every
        picture is loaded on a thread of its own.
        """
        flat = batches.map(lambda index, payload, *rest: (
            index, payload, *(tf.fill(tf.shape(index), value) for value in rest))).unbatch()
        images = flat.map(lambda index, payload, *rest: (self.load_one(index, payload), index, *rest),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return images.batch(batch_size, drop_remainder=drop_remainder)

    def _failing(self):
        """The indices of the pictures that fail to load, from one parallel pass over the split.

        Every check runs, but not the resizing, which cannot fail. A decoding op's error does not
        say which picture it was decoding, so each picture's success is recorded instead.
        """
        # reduce_max, not the size: a size known from the static shape would skip the decoding.
        loaded = self.in_order().map(
            lambda index, payload: (index, tf.reduce_max(self.load_one(index, payload, check_only=True))),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        # Batched after the errors are dropped: one Python step per picture would cost more than the
        # decoding itself.
        decoded = loaded.ignore_errors().map(lambda index, _: index).batch(CHECK_BATCH)
        good = np.zeros(self.count, bool)
        for indices in decoded.as_numpy_iterator():
            good[indices] = True
        return np.flatnonzero(~good)

    def _messages(self, indices):
        """(name, message) of the pictures `indices`, read once more to say what is wrong with each."""
        wanted = np.zeros(self.count, bool)
        wanted[indices] = True
        wanted = tf.constant(wanted)
        chosen = self.in_order().filter(lambda index, payload: tf.gather(wanted, index))
        found = [(self.name_of(int(index), payload), self.check_one(int(index), payload))
                 for index, payload in chosen.as_numpy_iterator()]
        # A picture that failed only in the pipeline (e.g. a file that came back) has no message.
        return [(name, message) for name, message in found if message is not None]

    def bad_pictures(self):
        """(name, what is wrong) of every picture that cannot be used (see `protocols.Split`)."""
        bad = self._failing()
        return self._messages(bad) if len(bad) else []

    def find_bad(self):
        """Messages naming the pictures that fail to load (at most MAX_NAMED, then a count)."""
        bad = self._failing()
        if not len(bad):
            return []
        messages = [message for _, message in self._messages(bad[:MAX_NAMED])]
        if len(bad) > MAX_NAMED:
            messages.append(f"... and {len(bad) - MAX_NAMED} more")
        return messages

    def name_of(self, index, payload):
        """How a picture is named in messages and in `without`."""
        return f"picture {index}"


class StreamedImages:
    """The training data source of a `StreamedSplit` (see `keras_vae.data.protocols.TrainingSource`);
    with `labels` (every picture's label, by index) its batches are (images, int32 labels)."""

    def __init__(self, split, batch_size, seed, binarize_mode="none", labels=None):
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.binarize_mode = binarize_mode
        self.labels = labels
        self.steps_per_epoch = pipelines.steps_per_epoch(split.count, batch_size)
        self.image_shape = split.image_shape
        self.description = split.description

    def dataset(self, first_epoch=0, first_step=0, input_context=None):
        batches = self.split.global_batches(self.batch_size, self.seed, first_epoch, first_step)
        local = pipelines.local_batches(batches, self.batch_size, input_context)
        size = self.batch_size if input_context is None else input_context.get_per_replica_batch_size(
            self.batch_size)
        table = None if self.labels is None else tf.constant(self.labels)

        def model_input(image, index, epoch):
            pixels = pipelines.to_model_input(image, index, self.binarize_mode, self.seed, epoch, uint8=True)
            return pixels if table is None else (pixels, pipelines.label_batches(table, index))

        images = self.split._decoded(local, size).map(model_input)
        return pipelines.endless(pipelines.with_options(images.prefetch(pipelines.PREFETCH_BATCHES)))
