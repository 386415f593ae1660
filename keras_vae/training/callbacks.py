"""Keras callbacks for VAE training: KL warm-up, sample grids and TensorBoard pictures.

Each works under `Model.fit` and under `keras_vae.Trainer`, which drives callbacks through
`keras.callbacks.CallbackList` with the same protocol (train, epoch and per-execution batch events).
"""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vae.images import image_grid, save_image_grid

SAMPLE_GRID_SIZE = 64


class KLWarmup(keras.callbacks.Callback):
    """Raises a VAE's KL weight linearly from 0 to its `beta` over the first `epochs` epochs.

    Epoch e (from 0) trains with weight beta * min(1, e / epochs). The weight is a function of the
    epoch alone, so a resumed run continues the schedule exactly.
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        fraction = min(1.0, epoch / self.epochs) if self.epochs else 1.0
        self.model.kl_weight.assign(self.model.beta * fraction)


def prior_samples(model, count, seed):
    """(images, columns) of a grid of the model's samples for `seed`: `count` images in a near-square
    grid, or for a class-conditional model one row per class, count // classes images wide."""
    classes = getattr(model, "classes", None)
    if classes is None:
        return keras.ops.convert_to_numpy(model.sample(count, seed=seed)), None
    columns = max(1, count // len(classes))
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), columns)
    return keras.ops.convert_to_numpy(model.sample(len(labels), seed=seed, labels=labels)), columns


class _EveryNEpochs(keras.callbacks.Callback):
    """Acts after every `every`-th epoch and after the last one (from the `epochs` training param)."""

    def __init__(self, every):
        super().__init__()
        self.every = every

    def _due(self, epoch):
        done = epoch + 1
        return bool(self.every) and (done % self.every == 0 or done == self.params.get("epochs"))


class SampleGrid(_EveryNEpochs):
    """Writes `directory/epoch_NNN.png`, a grid of `VAE.sample(count, seed)`, every `every` epochs
    (of a class-conditional model: one row per class, see `prior_samples`).

    A fixed seed decodes the same latents each time, so the grids show how training changes them.
    """

    def __init__(self, directory, every=5, count=SAMPLE_GRID_SIZE, seed=0):
        super().__init__(every)
        self.directory = Path(directory)
        self.count = count
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        if self._due(epoch):
            samples, columns = prior_samples(self.model, self.count, self.seed)
            save_image_grid(samples, self.directory / f"epoch_{epoch + 1:03d}.png", columns)


class TensorBoardImages(_EveryNEpochs):
    """Logs sample and reconstruction grids to TensorBoard every `every` epochs (and after the last).

    Use it beside `keras.callbacks.TensorBoard`, which logs the scalars; the images go to
    `log_dir/train`, next to its training scalars, with a text `bound` naming the bound whose
    negative the `loss` scalars are (`VAE.bound`).

    Args:
        log_dir: The TensorBoard log folder.
        images: A few images in [0, 1], [n, H, W, C]: shown above their reconstructions.
        every: Epochs between pictures.
        seed: Seed of the sample latents, fixed for the whole run.
        labels: The images' labels [n], for a class-conditional model.
    """

    def __init__(self, log_dir, images, every=5, seed=0, labels=None):
        super().__init__(every)
        self.log_dir = Path(log_dir)
        self.images = np.asarray(images, np.float32)
        self.labels = labels
        self.seed = seed
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(str(self.log_dir / "train"))
        with self._writer.as_default(step=0):
            tf.summary.text("bound", f"loss is the negative {self.model.bound}")

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        samples, columns = prior_samples(self.model, SAMPLE_GRID_SIZE, self.seed)
        labels = () if self.labels is None else (self.labels,)
        reconstructions = keras.ops.convert_to_numpy(self.model.reconstruct(self.images, *labels))
        pairs = np.concatenate([self.images, reconstructions])
        with self._writer.as_default(step=epoch + 1):
            tf.summary.image("samples", image_grid(samples, columns)[None])
            tf.summary.image("reconstructions", image_grid(pairs, len(self.images))[None])
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
