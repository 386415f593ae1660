"""The contracts of the data package: a split, and the training source the training loop drives.

Every kind of data (IDX files and small TFDS data sets in memory, folders of pictures and large TFDS
data sets streamed) opens as a `Split`; its `training_source` is a `TrainingSource`. The training loop
(`keras_vae.training.Trainer`), `train.py` and `evaluate.py` use nothing else of them.
"""

from typing import Protocol, runtime_checkable

import numpy as np
import tensorflow as tf


@runtime_checkable
class TrainingSource(Protocol):
    """Endless, replayable training batches.

    Each epoch's order is a stateless function of (seed, epoch), which is what makes a resumed run
    exact: it neither replays nor skips a batch.
    """

    steps_per_epoch: int  # full global batches per epoch
    image_shape: tuple[int, int, int]  # (height, width, channels) of the images it yields

    def dataset(self, first_epoch=0, first_step=0, input_context=None) -> tf.data.Dataset:
        """Endless batches of images (uint8, or floats in [0, 1]) from step `first_step` of `first_epoch`;
        for a source made with labels, batches of (images, int32 labels [batch]).

        Without an input context: global batches. With one (from
        `strategy.distribute_datasets_from_function`): this input pipeline's slice of every global
        batch, cut into per-replica batches, so N replicas on W workers see exactly the global batches
        one process sees, and each worker loads (decodes) only its own slice.
        """


@runtime_checkable
class Split(Protocol):
    """A named part of a data set (`train[:90%]`, `test[8000:]`), in memory or streamed from files."""

    count: int  # number of images
    image_shape: tuple[int, int, int]  # (height, width, channels) of every image
    description: str  # where the images come from, for the log
    # The names of the classes, label i named classes[i] (IDX label files: "0", "1", ...; TFDS: the
    # 'label' feature's names; a folder: its class subfolders); None when the split has no labels.
    classes: tuple[str, ...] | None

    def training_source(self, batch_size, seed, binarize_mode="none", labels=False) -> TrainingSource:
        """The split as training data: full global batches of `batch_size`, shuffled per epoch; with
        `labels`, batches of (images, labels) for a class-conditional model.

        Raises:
            UserError: for labels from a split that has none, saying where labels come from.
        """

    def evaluation_dataset(self, batch_size, binarize_mode="none", labels=False) -> tf.data.Dataset:
        """Every image once, in order, as floats in [0, 1] (with `labels`: (images, labels)); the last
        batch may be partial.

        Raises:
            UserError: for labels from a split that has none.
        """

    def load_all(self, limit=None) -> tuple[np.ndarray, np.ndarray | None]:
        """(uint8 images [N, H, W, C], integer labels [N] or None) of the first `limit` images."""

    def bad_pictures(self) -> list[tuple[str, str]]:
        """(name, what is wrong) of every picture that cannot be used, found in one parallel pass
        before training; [] for data that needs no check (decoded arrays, TFDS's prepared records)."""

    def without(self, names) -> "Split":
        """The same split without the pictures `names` (from `bad_pictures`)."""

    def find_bad(self) -> list[str]:
        """Messages naming the pictures that fail to load (a few, then a count); run after a
        pipeline error, which does not say which picture failed."""
