"""Backups of a training run, so that a killed run resumes exactly where its last backup left it.

A backup holds everything the next step depends on: the weights, the optimizer state, the sampling
layer's random state, the running sums of the current epoch's metrics, the position (epoch, step)
and the history of finished epochs. Together with a data order that is a function of (seed, epoch),
a resumed run neither replays nor skips a batch and ends with the weights of an uninterrupted run.

Backups are TensorFlow checkpoints: a new one is complete on disk before the `checkpoint` index file
is atomically switched to it, and the previous one is kept, so a kill during a save leaves the
previous backup loadable.
"""

import json
from pathlib import Path

import tensorflow as tf

from keras_vae import files
from keras_vae.errors import DiskFull, UserError, is_disk_full

KEEP = 2


class RunBackup:
    """Saves and restores the state of a `VAE` training run.

    Every worker must call `save` (saving reads variables that are summed across workers); only the
    chief's backups are kept in `directory`, other workers write to a private temporary folder that
    is removed by `close`. Every worker restores from `directory`, which under multi-worker training
    must therefore be on a file system all workers share.

    Args:
        directory: The folder for the chief's backups.
        model: A compiled `VAE` whose optimizer is built.
        chief: Whether this process is the chief.
    """

    def __init__(self, directory, model, chief=True):
        self.directory = Path(directory)
        self.chief = chief
        self.position = tf.Variable([0, 0], dtype=tf.int64, trainable=False)  # epoch, step
        self.history = tf.Variable("[]", dtype=tf.string, trainable=False)
        state = {
            "model": [v.value for v in model.variables],  # weights and the sampling seed state
            "optimizer": [v.value for v in model.optimizer.variables],
            "metrics": [v.value for metric in model.metrics for v in metric.variables],
        }
        self._numeric = [v for variables in state.values() for v in variables]
        self.checkpoint = tf.train.Checkpoint(**state, position=self.position, history=self.history)
        self._write_to = self.directory if chief else files.throwaway_folder()
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self._write_to), max_to_keep=KEEP)

    def save(self, epoch, step, history):
        """Records that `epoch` (0-based) has run `step` steps, with `history` of finished epochs.

        Raises:
            DiskFull: if the folder fills up; the half-written backup is removed, the older ones kept.
        """
        self.position.assign([epoch, step])
        self.history.assign(json.dumps(history))
        before = set(self._write_to.iterdir()) if self._write_to.exists() else set()
        try:
            self.manager.save()
        except Exception as error:
            if not is_disk_full(error):
                raise
            # TensorFlow leaves the new backup's `ckpt-N_temp` folder (and possibly some of its
            # files); the older backups and the `checkpoint` index file are untouched.
            for path in set(self._write_to.iterdir()) - before:
                files.remove(path)
            kept = self.newest()[:1] if self.chief else []
            raise DiskFull(
                self._write_to, "the next backup", self._size(),
                f"the last backup, {kept[0]}, is kept." if kept else "no backup was written yet.",
            ) from None

    def _size(self):
        """Bytes a backup takes: the newest one's files, or the variables' bytes if there is none."""
        newest = self.newest()[:1]
        if newest:
            return files.size_on_disk(*self.directory.glob(Path(newest[0]).name + ".*"))
        return files.variables_bytes(self._numeric)

    def newest(self):
        """Paths of the chief's backups, newest first.

        Found by file name rather than through the `checkpoint` index file, so that a damaged
        index cannot hide the backups.
        """
        numbers = [int(p.name[len("ckpt-"):-len(".index")]) for p in self.directory.glob("ckpt-*.index")
                   if p.name[len("ckpt-"):-len(".index")].isdigit()]
        return [str(self.directory / f"ckpt-{n}") for n in sorted(numbers, reverse=True)]

    def restore(self):
        """Restores the newest readable backup.

        Returns:
            (epoch, step, history), or None when there is no backup.

        Raises:
            UserError: if there are backups but none of them can be read.
        """
        paths = self.newest()
        for path in paths:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 - TF's reader raises many types for damaged files
                print(f"warning: backup {path} is unreadable ({type(error).__name__}: "
                      f"{str(error).splitlines()[0]}); trying an older one.", flush=True)
                continue
            epoch, step = (int(x) for x in self.position.numpy())
            return epoch, step, json.loads(self.history.numpy().decode())
        if paths:
            raise UserError(
                f"No backup in {self.directory} can be read ({len(paths)} found, all damaged). "
                "Start over (restart=True), or restore the folder from a copy."
            )
        return None

    def close(self):
        """Removes a non-chief worker's private folder."""
        if not self.chief:
            files.remove(self._write_to)
