"""The training loop: one `strategy.run` loop for the default, mirrored and multi-worker strategies.

Keras 3's `Model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), so training
calls `VAE.train_step` through `strategy.run` over a distributed dataset, the same way on one device
and on many. `keras_vae.training.run.train` (what `train.py` calls) sets it up.
"""

import math
import time

import keras
import tensorflow as tf

from keras_vae.errors import TrainingDiverged
from keras_vae.training import distribute


def make_optimizer(name, learning_rate, mixed_precision="none"):
    """Returns a Keras optimizer by name ("adam" or "sgd"), loss-scaled for float16 training."""
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    optimizer = optimizers[name](learning_rate=learning_rate)
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision == "float16" else optimizer


class Trainer:
    """Runs training and evaluation of a compiled VAE under a strategy, with optional backups.

    Args:
        model: A compiled `VAE` whose variables and optimizer were built in `strategy.scope()`.
        strategy: The `tf.distribute.Strategy`.
        steps_per_execution: Training steps per call into the compiled function.
        progress: Show a progress bar; otherwise one line per epoch (on the chief only).
        backup: Optional `keras_vae.training.RunBackup`: resume from it, save to it after every epoch.
        backup_every_steps: Also save a backup every this many steps (0: after epochs only).
        preemption: Optional handler from `keras_vae.training.stop_on_signals`, asked after every
            execution whether to back up that step and stop.
    """

    def __init__(self, model, strategy, steps_per_execution=1, progress=True, backup=None,
                 backup_every_steps=0, preemption=None):
        self.model = model
        self.strategy = strategy
        self.steps_per_execution = steps_per_execution
        self.chief = distribute.is_chief(strategy)
        self.progress = progress and self.chief
        self.backup = backup
        self._backup_every = backup_every_steps if backup is not None else 0
        self.preemption = preemption

        def train_step(batch):
            # Training sources yield only full batches, so every replica's part has the static size
            # of the dataset's spec and the global count is a constant: no cross-replica sum for it.
            local = tf.nest.flatten(batch)[0].shape[0]
            return model.train_step(batch, local * strategy.num_replicas_in_sync if local else None)

        @tf.function
        def train_steps(iterator, steps):
            for _ in tf.range(steps):
                strategy.run(train_step, args=(next(iterator),))

        @tf.function
        def evaluate(dataset):
            for batch in dataset:
                strategy.run(model.test_step, args=(batch,))

        @tf.function
        def read_metrics():
            return {m.name: m.result() for m in model.metrics}

        self._train_steps = train_steps
        self._evaluate = evaluate
        self._read_metrics = read_metrics

    def iterator(self, train_data, first_epoch=0, first_step=0):
        """A distributed iterator over a training data source, from step `first_step` of `first_epoch`.

        Each input pipeline (one per worker) builds its own slice of every global batch, so that a
        worker reads and decodes only the images its replicas train on.
        """
        return iter(self.strategy.distribute_datasets_from_function(
            lambda context: train_data.dataset(first_epoch, first_step, context)))

    def run_steps(self, iterator, count):
        """Runs `count` training steps from a distributed `iterator`, reading nothing back."""
        self._train_steps(iterator, tf.constant(count))

    def _results(self, prefix=""):
        # One compiled call for all metrics (it runs after every execution). Every worker must make
        # it: reading a metric sums it across replicas, a collective op under multi-worker training.
        return {prefix + name: float(value) for name, value in self._read_metrics().items()}

    def _reset(self):
        for metric in self.model.metrics:
            metric.reset_state()

    def _next_stop(self, done, steps):
        """The step at which the next execution must end: a backup point or the end of the epoch."""
        stop = min(done + self.steps_per_execution, steps)
        if self._backup_every:
            stop = min(stop, (done // self._backup_every + 1) * self._backup_every)
        return stop

    def train_epoch(self, iterator, steps, epoch, history, callbacks, first_step=0):
        """Runs steps `first_step` to `steps` of `epoch`; returns the epoch's mean metrics.

        From a step other than 0 the metrics carry on from their restored running sums. `callbacks`
        (a `CallbackList`) hear of each execution, as under `Model.fit` with `steps_per_execution`.
        """
        if first_step == 0:
            self._reset()
        done, results = first_step, self._results()
        while done < steps:
            stop = self._next_stop(done, steps)
            callbacks.on_train_batch_begin(done)
            self.run_steps(iterator, stop - done)
            where = f"step {stop}" if stop - done == 1 else f"one of steps {done + 1} to {stop}"
            done = stop
            results = self._results()
            if not math.isfinite(results["loss"]):
                last = self.backup.newest()[:1] if self.backup is not None else []
                raise TrainingDiverged(
                    f"The loss became {results['loss']} in epoch {epoch + 1}, at {where}. "
                    + (f"The last good backup, {last[0]}, is kept. " if last else "")
                    + "Lower the `learning_rate`, check the data for NaN or Inf, or rerun with "
                    "check_numerics=True and steps_per_execution=1 to find the op."
                )
            callbacks.on_train_batch_end(done - 1, results)
            if self._backup_every and done % self._backup_every == 0 and done < steps:
                self.backup.save(epoch, done, history)
            if self.preemption is not None:
                self.preemption.check(epoch, done, steps, history)
        return results

    def evaluate(self, dataset, callbacks=None):
        """Evaluates on a distributed dataset; returns mean metrics prefixed with `val_`."""
        if callbacks is not None:
            callbacks.on_test_begin()
        self._reset()
        self._evaluate(dataset)
        results = self._results()
        if callbacks is not None:
            callbacks.on_test_end(results)
        return {f"val_{name}": value for name, value in results.items()}

    def fit(self, train_data, val_dataset, epochs, callbacks=(), resume=True):
        """Trains until `epochs` epochs are done, resuming from the backup if there is one.

        Args:
            train_data: A `keras_vae.data.TrainingSource`: its `steps_per_epoch`, and
                `dataset(first_epoch, first_step, input_context)`, the endless batches from that
                position on, each epoch in an order that depends only on the epoch.
            val_dataset: A finite `tf.data.Dataset` of global validation batches.
            epochs: Total number of epochs, including those done before a resume.
            callbacks: Keras callbacks, called as `Model.fit` calls them (a progress bar is added on
                the chief). A callback that sets `model.stop_training` ends training after the epoch.
            resume: Whether to continue from the newest backup (False: start over).

        Returns:
            The history: one dict of metrics per epoch, from the first epoch of the run.
        """
        steps = train_data.steps_per_epoch
        restored = self.backup.restore() if self.backup is not None and resume else None
        first_epoch, first_step, history = restored or (0, 0, [])
        if restored and self.chief:
            print(f"Resuming from the backup at epoch {first_epoch + 1}, step {first_step}.")
        iterator = self.iterator(train_data, first_epoch, first_step)
        val_dataset = self.strategy.experimental_distribute_dataset(val_dataset)
        # verbose 2 is Keras' one line per epoch; only the chief reports.
        callbacks = keras.callbacks.CallbackList(
            list(callbacks), add_progbar=self.chief, model=self.model,
            verbose=1 if self.progress else 2, epochs=epochs, steps=steps,
        )
        self.model.stop_training = False
        callbacks.on_train_begin()
        for epoch in range(first_epoch, epochs):
            epoch_start = time.perf_counter()
            callbacks.on_epoch_begin(epoch)
            first = first_step if epoch == first_epoch else 0
            start = time.perf_counter()
            train = self.train_epoch(iterator, steps, epoch, history, callbacks, first)
            seconds = time.perf_counter() - start
            val = self.evaluate(val_dataset, callbacks)
            history.append({"epoch": epoch + 1, **train, **val, "train_seconds": seconds})
            if self.backup is not None:
                self.backup.save(epoch + 1, 0, history)
            callbacks.on_epoch_end(epoch, {**train, **val})
            # Everything the epoch took: training, validation, backup, callbacks (after the backup,
            # so a resumed run's history lacks it for the epochs before the interruption).
            history[-1]["epoch_seconds"] = time.perf_counter() - epoch_start
            if self.model.stop_training:
                break
        callbacks.on_train_end(history[-1] if history else None)
        return history
