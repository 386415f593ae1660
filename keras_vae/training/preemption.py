"""Stopping on SIGTERM or SIGINT: finish the running steps, back up at that step, exit.

Clusters rarely kill at once: Kubernetes, Slurm and preemptible cloud machines send SIGTERM and wait
a grace period before SIGKILL. While training runs, both signals are recorded instead of ending the
process; at the next execution boundary (every `steps_per_execution` steps) every worker writes a
backup of that exact step and training stops with `Preempted`. Rerunning the same command resumes
there. A further signal during the save only repeats that the run is stopping: the save goes on, and
the backup it replaces stays until the new one is complete (see `keras_vae.training.backup`).

Under `MultiWorkerMirroredStrategy` the workers must agree on the step: TensorFlow's
`PreemptionCheckpointHandler` does that through the cluster's coordination service (the signalled
worker names a step, waits until every worker acknowledges it, and all save there). The one-process
strategies use `_LocalStop` instead: the handler is documented for MultiWorkerMirroredStrategy and
TPUs only, it probes the GCP metadata server when it is created (up to 5 s), and one process needs no
agreement, so a flag read between executions gives the same behaviour.
"""

import contextlib
import signal
import threading

import tensorflow as tf

from keras_vae import files
from keras_vae.errors import Preempted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Signals:
    """Records SIGTERM and SIGINT while installed, instead of letting them end the process."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def install(self):
        # Python runs signal handlers in the main thread only; elsewhere (a library caller's
        # thread) the signals keep their usual effect.
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._record) for signum in SIGNALS}

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _record(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            print(f"\nReceived {name}: finishing the steps that are running, then saving a backup "
                  "and stopping.", flush=True)
        else:
            print(f"\nReceived {name} again: already stopping; the backup is being written.", flush=True)


def _message(signum, epoch, step, steps, backup, peer=False):
    cause = "another worker received a termination signal" if peer else signal.Signals(signum).name
    where = f"epoch {epoch + 1}, step {step} of {steps}"
    newest = backup.newest()[:1] if backup.chief else []  # the chief's folder, written by the chief
    return (f"Stopped ({cause}) at {where}, after finishing the steps that were running; backed up "
            f"there{f' in {newest[0]}' if newest else ''}. Rerun the same command to resume from there.")


class _LocalStop:
    """Stops a one-process run (default or mirrored strategy) at the first boundary after a signal."""

    def __init__(self, backup, signals):
        self._backup = backup
        self._signals = signals

    @property
    def received(self):
        """The signal this process received (None if none)."""
        return self._signals.received

    def check(self, epoch, step, steps, history):
        """Called after every execution: on a signal, backs up (`epoch`, `step`) and raises."""
        if self._signals.received is not None:
            self._backup.save(epoch, step, history)
            raise Preempted(self._signals.received, _message(self._signals.received, epoch, step, steps,
                                                             self._backup))

    def close(self):
        pass


class _MultiWorkerStop(_LocalStop):
    """Stops every worker at the same step through TensorFlow's `PreemptionCheckpointHandler`.

    The handler keeps its own position (the number of `check` calls, the same on every worker) and
    needs a checkpoint to restore it from; it gets an empty one in a private folder, and saves
    through `save_fn` into the run's backups, which hold the real position (epoch, step).
    """

    def __init__(self, strategy, backup, signals):
        super().__init__(backup, signals)
        self._folder = files.throwaway_folder("preemption")
        self._where = None
        config = tf.distribute.experimental.TerminationConfig(
            # Polled once a second from the handler's thread; the signal handler only sets a flag.
            termination_watcher_fn=lambda: signals.received is not None,
            exit_fn=self._stop,
            grace_period=0,  # save and stop at once (its default on GCP GPUs is to train on for 1 h)
            save_fn=backup.save,
        )
        # The handler reads its own deprecated `total_run_calls` when it saves; that warning is not ours.
        tf.get_logger().addFilter(lambda record: "total_run_calls" not in record.getMessage())
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, tf.train.Checkpoint(), f"{self._folder}/handler", config)

    def check(self, epoch, step, steps, history):
        """Called after every execution on every worker: all save and stop at the agreed step."""
        self._where = (epoch, step, steps)
        self._handler.save_checkpoint_if_preempted(epoch, step, history)

    def _stop(self):
        signum = self._signals.received
        raise Preempted(signum or signal.SIGTERM,
                        _message(signum, *self._where, self._backup, peer=signum is None))

    def close(self):
        files.remove(self._folder)


@contextlib.contextmanager
def stop_on_signals(strategy, backup):
    """Within the block, SIGTERM and SIGINT stop training cleanly (see the module docstring).

    Yields:
        A handler whose `check(epoch, step, steps, history)` the `Trainer` calls after every
        execution, and whose `received` is the signal this process got (None if none).
    """
    signals = _Signals()
    signals.install()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        stop = _MultiWorkerStop(strategy, backup, signals)
    else:
        stop = _LocalStop(backup, signals)
    try:
        yield stop
    finally:
        stop.close()
        signals.uninstall()
