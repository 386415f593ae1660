"""A whole training run as `train.py` performs it: data, strategy, model, backups, training, export."""

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_vae import data, distribute, export, preemption
from keras_vae.backup import RunBackup
from keras_vae.callbacks import KLWarmup, SampleGrid, TensorBoardImages
from keras_vae.data.pipelines import to_unit_interval
from keras_vae.errors import DiskFull, UserError, is_disk_full
from keras_vae.models import build_vae
from keras_vae.training import Trainer, TrainingDiverged, make_optimizer, resolve_jit_compile

RECONSTRUCTION_COUNT = 8


class WorkerLost(UserError):
    """Another worker of a multi-worker run stopped (preempted, crashed, unreachable)."""

    exit_status = 1


def _open_splits(config):
    """The training and validation splits (see `keras_vae.data.open_split`), checked against each other."""
    train_split = data.split_of(config, config.train_split)
    val_split = data.split_of(config, config.val_split)
    if val_split.image_shape != train_split.image_shape:
        raise UserError(f"Training images are {train_split.image_shape} but validation images are "
                        f"{val_split.image_shape}; use splits of one data set.")
    # Trainer.fit checks this too, but only after the run folder is written: fail before that.
    data.steps_per_epoch(train_split.count, config.batch_size)
    return train_split, val_split


def _check_run_dir(config, run_dir):
    """Refuses to resume a run that was started with other options (unless --restart)."""
    saved = run_dir / "config.json"
    if config.restart or not saved.exists() or not any((run_dir / "backup").glob("ckpt-*.index")):
        return
    try:
        config.check_resumable_from(json.loads(saved.read_text()))
    except json.JSONDecodeError as error:
        raise UserError(f"{saved} is damaged ({error}); start over with --restart.")


def _callbacks(config, run_dir, val_split, chief):
    """The run's callbacks: KL warm-up on every worker; pictures and TensorBoard on the chief."""
    callbacks = [KLWarmup(config.kl_warmup_epochs)] if config.kl_warmup_epochs else []
    if not chief:
        return callbacks
    if config.sample_every:
        callbacks.append(SampleGrid(run_dir / "samples", config.sample_every, seed=config.seed))
    if config.tensorboard:
        log_dir = run_dir / "tensorboard"
        originals = to_unit_interval(val_split.load_all(RECONSTRUCTION_COUNT)[0]).numpy()
        callbacks += [keras.callbacks.TensorBoard(str(log_dir), write_graph=False),
                      TensorBoardImages(log_dir, originals, config.sample_every or config.epochs,
                                        seed=config.seed)]
    return callbacks


def _save_keras_file(model, path, chief):
    """Writes the whole VAE to `path` (a .keras file) in one rename, so a kill leaves no half file.

    Every worker saves, because reading the metrics' variables is a collective under multi-worker
    training; only the chief's file is kept.
    """
    staged = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    if not chief:
        staged = Path(tempfile.mkdtemp(prefix="keras_vae-worker-")) / path.name
    try:
        model.save(staged)
        if chief:
            os.replace(staged, path)
    except OSError as error:
        if not is_disk_full(error):
            raise
        size = sum(v.numpy().nbytes for v in [*model.variables, *model.optimizer.variables])
        raise DiskFull(staged.parent, "the model file", size, "the backups are intact.") from None
    finally:
        if chief:
            staged.unlink(missing_ok=True)
        else:
            shutil.rmtree(staged.parent, ignore_errors=True)


def train(config, callbacks=()):
    """Trains (or resumes) a VAE as `config` says, exports it, and returns a summary dict.

    Writes `config.json`, `metrics.json`, `model.keras`, backups and sample grids to `config.run_dir`,
    and the decoder and encoder to `config.export_dir`; under multi-worker training only the chief
    writes them. Everything that can be wrong with the options or the data is checked before anything
    is written.

    Args:
        config: A `keras_vae.config.TrainConfig`.
        callbacks: More Keras callbacks for the training loop (e.g. `keras.callbacks.CSVLogger`).
    """
    distribute.configure_devices(config.gpu_memory_growth, config.deterministic)
    if config.check_numerics:
        tf.debugging.enable_check_numerics()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    train_split, val_split = _open_splits(config)
    run_dir = Path(config.run_dir)
    _check_run_dir(config, run_dir)
    chief = distribute.is_chief(strategy)
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else f"mixed_{config.mixed_precision}"
    )
    with strategy.scope():
        model = build_vae(config.arch, train_split.image_shape, config.latent_dim, config.hidden_dim,
                          config.likelihood, config.beta, config.seed)
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.mixed_precision)
        model.compile(optimizer=optimizer, jit_compile=resolve_jit_compile(config.jit_compile))
        model.optimizer.build(model.trainable_variables)

    exported = run_dir / "export.json"
    if chief:
        if config.restart:
            shutil.rmtree(run_dir / "backup", ignore_errors=True)
            exported.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.write_json(run_dir / "config.json")
        print(f"Training {config.arch} VAE on {train_split.count} images of shape {train_split.image_shape} "
              f"({train_split.description}), validating on {val_split.count} ({val_split.description}), "
              f"{strategy.num_replicas_in_sync} replica(s).")
    backup = RunBackup(run_dir / "backup", model, chief)
    train_data = train_split.training_source(config.batch_size, config.seed, config.binarize)
    val_dataset = val_split.evaluation_dataset(config.batch_size, config.binarize)
    try:
        with (data.naming_bad_pictures(train_split, val_split),
              preemption.stop_on_signals(strategy, backup) as stop):
            trainer = Trainer(model, strategy, config.steps_per_execution, config.progress, backup,
                              config.backup_every_steps, stop)
            history = trainer.fit(train_data, val_dataset, config.epochs,
                                  [*_callbacks(config, run_dir, val_split, chief), *callbacks],
                                  resume=not config.restart)
            if stop.received is not None:  # during the last validation or backup: skip the export
                raise preemption.Preempted(stop.received, (
                    f"Stopped ({signal.Signals(stop.received).name}) after the last epoch, backed up in "
                    f"{backup.newest()[0]}. Rerun the same command to export it without training again."))
    except tf.errors.InvalidArgumentError as error:
        if not config.check_numerics:
            raise
        raise TrainingDiverged(f"--check-numerics found the first NaN or Inf:\n{error.message[:2000]}")
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        raise WorkerLost(
            f"Lost contact with another worker ({error.message.strip().splitlines()[0][:300]}). "
            f"Restart every worker with the same command to resume from the last backup in "
            f"{run_dir / 'backup'}."
        )
    finally:
        backup.close()
    # The optimizer's step count proves that a resumed run neither replayed nor skipped a batch.
    summary = {"final": history[-1], "history": history, "steps": int(model.optimizer.iterations.numpy()),
               "version": None}
    # Every worker reads this (the run folder is shared), as every worker must take part in the save.
    done = json.loads(exported.read_text()) if exported.exists() else {}
    finished = done.get("epochs") == len(history)
    if not finished:
        _save_keras_file(model, run_dir / "model.keras", chief)
    if not chief:
        return summary
    if finished:
        summary["version"] = done["version"]
        print(f"This run is already finished and exported as version {done['version']}; "
              "use --restart to train again, or a larger --epochs to train on.")
        return summary
    metrics_text = json.dumps(summary, indent=2) + "\n"
    (run_dir / "metrics.json").write_text(metrics_text)
    files = {"config.json": json.dumps(config.to_dict(), indent=2) + "\n", "metrics.json": metrics_text}
    try:
        summary["version"] = export.publish(config.export_dir, model, files, seed=config.seed)
    except DiskFull as error:
        error.args = (f"{error} The trained model is in the backup {backup.newest()[0]}: the rerun "
                      "exports it without training again.",)
        raise
    exported.write_text(json.dumps({"version": summary["version"], "epochs": len(history)}) + "\n")
    final = history[-1]
    print(f"Exported version {summary['version']} to {config.export_dir}/{{decoder,encoder}}/; "
          f"final val_loss {final['val_loss']:.2f} nats/image "
          f"(reconstruction {final['val_reconstruction_loss']:.2f}, KL {final['val_kl_loss']:.2f}).")
    return summary
