"""The training loop: one `strategy.run` loop for the default, mirrored and multi-worker strategies.

Keras 3's `Model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so training
calls `VAE.train_step` through `strategy.run` over a distributed dataset, the same way on one device
and on many, and `train.py` reaches it through `run`.
"""

import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vae import data, distribute, export, plots
from keras_vae.errors import UserError
from keras_vae.models import build_vae, check_image_shape

SAMPLE_GRID_SIZE = 64


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""

    exit_status = 1


def make_optimizer(name, learning_rate):
    """Returns a Keras optimizer by `--optimizer` name."""
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    return optimizers[name](learning_rate=learning_rate)


class Trainer:
    """Runs training and evaluation of a compiled VAE under a strategy.

    Args:
        model: A compiled `VAE` whose variables and optimizer were built in `strategy.scope()`.
        strategy: The `tf.distribute.Strategy`.
        steps_per_execution: Training steps per call into the compiled function.
        progress: Show a progress bar; otherwise one line per epoch (on the chief only).
    """

    def __init__(self, model, strategy, steps_per_execution=1, progress=True):
        self.model = model
        self.strategy = strategy
        self.steps_per_execution = steps_per_execution
        self.chief = distribute.is_chief(strategy)
        self.progress = progress and self.chief

        @tf.function
        def train_steps(iterator, steps):
            for _ in tf.range(steps):
                strategy.run(model.train_step, args=(next(iterator),))

        @tf.function
        def evaluate(dataset):
            for batch in dataset:
                strategy.run(model.test_step, args=(batch,))

        self._train_steps = train_steps
        self._evaluate = evaluate

    def _results(self, prefix=""):
        # Every worker must read: reading a metric sums it across replicas (a collective op).
        return {prefix + m.name: float(m.result()) for m in self.model.metrics}

    def _reset(self):
        for metric in self.model.metrics:
            metric.reset_state()

    def train_epoch(self, iterator, steps, epoch, progbar=None):
        """Runs `steps` training steps from `iterator`; returns the epoch's mean metrics."""
        self._reset()
        done = 0
        while done < steps:
            count = min(self.steps_per_execution, steps - done)
            self._train_steps(iterator, tf.constant(count))
            done += count
            results = self._results()
            if not math.isfinite(results["loss"]):
                raise TrainingDiverged(
                    f"The loss became {results['loss']} in epoch {epoch + 1} by step {done}. "
                    "Lower --learning-rate, or check the input data for NaN or infinite values."
                )
            if progbar is not None:
                progbar.update(done, list(results.items()), finalize=False)
        return results

    def evaluate(self, dataset):
        """Evaluates on a distributed dataset; returns mean metrics prefixed with `val_`."""
        self._reset()
        self._evaluate(dataset)
        return self._results(prefix="val_")

    def fit(self, train_images, val_images, epochs, batch_size, seed, on_epoch_end=None):
        """Trains for `epochs` epochs; returns the history, one dict of metrics per epoch.

        Args:
            train_images, val_images: uint8 arrays [N, H, W, C].
            epochs: Number of epochs.
            batch_size: Global batch size.
            seed: Seed of the data order.
            on_epoch_end: Optional callable(epoch_index, record).
        """
        steps = len(train_images) // batch_size
        if steps == 0:
            raise UserError(
                f"The training split has {len(train_images)} images, fewer than one batch of "
                f"{batch_size}; use a smaller --batch-size or a larger split."
            )
        distribute_dataset = self.strategy.experimental_distribute_dataset
        iterator = iter(distribute_dataset(data.training_dataset(train_images, batch_size, seed)))
        val_dataset = distribute_dataset(data.evaluation_dataset(val_images, batch_size))
        history = []
        for epoch in range(epochs):
            progbar = None
            if self.progress:
                print(f"Epoch {epoch + 1}/{epochs}")
                progbar = keras.utils.Progbar(steps, stateful_metrics=["loss"] + [
                    m.name for m in self.model.metrics] + [f"val_{m.name}" for m in self.model.metrics])
            start = time.perf_counter()
            train = self.train_epoch(iterator, steps, epoch, progbar)
            seconds = time.perf_counter() - start
            val = self.evaluate(val_dataset)
            if progbar is not None:
                progbar.update(steps, list({**train, **val}.items()), finalize=True)
            elif self.chief:
                shown = " - ".join(f"{k}: {v:.4f}" for k, v in {**train, **val}.items())
                print(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {shown}", flush=True)
            record = {"epoch": epoch + 1, **train, **val, "train_seconds": seconds}
            history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
        return history


def run(config):
    """Trains a VAE as `config` says, exports it, and returns a summary dict.

    Writes `config.json`, `metrics.json` and sample grids to `config.run_dir`, and the decoder and
    encoder to `config.export_dir` (on the chief only, under multi-worker training).
    """
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    train_images, _ = data.load_split(config.train_split, config.dataset, config.data_dir)
    val_images, _ = data.load_split(config.val_split, config.dataset, config.data_dir)
    image_shape = train_images.shape[1:]
    if val_images.shape[1:] != image_shape:
        raise UserError(
            f"Training images are {image_shape} but validation images are {val_images.shape[1:]}."
        )
    check_image_shape(config.arch, image_shape)
    with strategy.scope():
        model = build_vae(config.arch, image_shape, config.latent_dim, config.hidden_dim,
                          config.likelihood, config.beta, config.seed)
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        model.optimizer.build(model.trainable_variables)

    chief = distribute.is_chief(strategy)
    run_dir = Path(config.run_dir)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.write_json(run_dir / "config.json")
    z = np.random.default_rng(config.seed).standard_normal((SAMPLE_GRID_SIZE, config.latent_dim))
    z = tf.constant(z, tf.float32)

    def write_samples(epoch, record):
        last = epoch + 1 == config.epochs
        if chief and config.sample_every and ((epoch + 1) % config.sample_every == 0 or last):
            images = tf.sigmoid(model.decoder(z, training=False)).numpy()
            plots.save_image_grid(images, run_dir / "samples" / f"epoch_{epoch + 1:03d}.png")

    if chief:
        print(f"Training {config.arch} VAE on {len(train_images)} images of shape {image_shape}, "
              f"validating on {len(val_images)}, {strategy.num_replicas_in_sync} replica(s).")
    trainer = Trainer(model, strategy, config.steps_per_execution, config.progress)
    history = trainer.fit(train_images, val_images, config.epochs, config.batch_size, config.seed,
                          on_epoch_end=write_samples)
    summary = {"final": history[-1], "history": history, "version": None}
    if chief:
        metrics_text = json.dumps(summary, indent=2) + "\n"
        (run_dir / "metrics.json").write_text(metrics_text)
        files = {"config.json": json.dumps(config.to_dict(), indent=2) + "\n",
                 "metrics.json": metrics_text}
        summary["version"] = export.publish(config.export_dir, model.encoder, model.decoder, files,
                                            seed=config.seed)
        final = history[-1]
        print(f"Exported version {summary['version']} to {config.export_dir}/{{decoder,encoder}}/; "
              f"final val_loss {final['val_loss']:.2f} nats/image "
              f"(reconstruction {final['val_reconstruction_loss']:.2f}, KL {final['val_kl_loss']:.2f}).")
    return summary
