"""A whole training run as `train.py` performs it: data, strategy, model, backups, training, export.

This is the body of the `train.py` command: it takes a `TrainConfig`, whose fields are the command's
options, so its own messages name options.
"""

import json
import shutil
import signal
from pathlib import Path

import keras
import tensorflow as tf

from keras_vae import data, devices, files
from keras_vae.data.pipelines import require_labels
from keras_vae.data.sources import bad_picture_list
from keras_vae.errors import DiskFull, Preempted, TrainingDiverged, UserError, WorkerLost, is_disk_full
from keras_vae.images import to_unit_interval
from keras_vae.models import build_vae
from keras_vae.serving.publish import publish
from keras_vae.training import distribute
from keras_vae.training.backup import RunBackup
from keras_vae.training.callbacks import KLWarmup, SampleGrid, TensorBoardImages
from keras_vae.training.loop import Trainer, make_optimizer
from keras_vae.training.preemption import stop_on_signals

RECONSTRUCTION_COUNT = 8
SKIPPED_KEY = "skipped_pictures"  # beside the options in config.json
CLASSES_KEY = "classes"  # the class names of a --conditional run, beside the options in config.json
BAD_PICTURES_THEN = ("Nothing was exported. Replace them, and run the same command again (training "
                     "resumes from its last backup; after removing pictures, the split is another one: "
                     "add --restart).")


def _leave_out_bad_pictures(config, splits):
    """The splits without their unusable pictures, and the names left out; or a `UserError` naming all.

    Every picture is checked before the first step (in parallel), so a broken file is reported at
    once rather than when the shuffle first reaches it, maybe hours into training.
    """
    bad = sorted({pair for split in splits for pair in split.bad_pictures()})
    if not bad:
        return splits, []
    listing = bad_picture_list(bad)
    if not config.skip_bad_pictures:
        raise UserError(f"{len(bad)} pictures cannot be used:{listing}\nNothing was trained or written. "
                        "Replace or remove them, or pass --skip-bad-pictures to train without them.")
    names = [name for name, _ in bad]
    print(config.in_options(f"Leaving out {len(bad)} pictures that cannot be used (listed in config.json):"
                            f"{listing}"))
    return [split.without(names) for split in splits], names


def _open_splits(config):
    """The training and validation splits (see `keras_vae.data.open_split`), checked against each other."""
    splits = [data.split_of(config, config.train_split), data.split_of(config, config.val_split)]
    (train_split, val_split), skipped = _leave_out_bad_pictures(config, splits)
    if val_split.image_shape != train_split.image_shape:
        raise UserError(f"Training images are {train_split.image_shape} but validation images are "
                        f"{val_split.image_shape}; use splits of one data set.")
    # Trainer.fit checks this too, but only after the run folder is written: fail before that.
    data.steps_per_epoch(train_split.count, config.batch_size)
    if config.conditional:
        _check_labels(train_split, val_split)
    return train_split, val_split, skipped


def _check_labels(train_split, val_split):
    """Raises a `UserError` unless both splits have labels of the same classes (for --conditional)."""
    for split in (train_split, val_split):
        try:
            require_labels(split.classes, split.description)
        except UserError as error:
            raise UserError(f"{error} Or train a model that is not conditional: leave out --conditional.")
    if val_split.classes != train_split.classes:
        raise UserError(f"The training labels name the classes {', '.join(train_split.classes)} but the "
                        f"validation labels {', '.join(val_split.classes)}; use splits of one data set.")


def _classes(config, train_split):
    """The class names of the model: the data's under --conditional, else None."""
    return list(train_split.classes) if config.conditional else None


def _check_run_dir(config, run_dir, skipped, classes):
    """Refuses to resume a run that was started with other options, pictures or classes (unless
    --restart)."""
    saved = run_dir / "config.json"
    if config.restart or not saved.exists() or not any((run_dir / "backup").glob("ckpt-*.index")):
        return
    try:
        options = json.loads(saved.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{saved} is damaged ({error}); start over with --restart.")
    config.check_resumable_from(options)
    if options.get(SKIPPED_KEY, []) != skipped:
        raise UserError(f"The pictures left out of {config.run_dir} changed since the run started (then "
                        f"{len(options.get(SKIPPED_KEY, []))}, now {len(skipped)}), so its splits are other "
                        "ones. Start it over with --restart, or choose another --run-dir.")
    if options.get(CLASSES_KEY) != classes:
        raise UserError(f"The classes of {config.run_dir} changed since the run started (then "
                        f"{options.get(CLASSES_KEY)}, now {classes}), so its model is another one. Start it "
                        "over with --restart, or choose another --run-dir.")


def _callbacks(config, run_dir, val_split, chief):
    """The run's callbacks: KL warm-up on every worker; pictures and TensorBoard on the chief."""
    callbacks = [KLWarmup(config.kl_warmup_epochs)] if config.kl_warmup_epochs else []
    if not chief:
        return callbacks
    if config.sample_every:
        callbacks.append(SampleGrid(run_dir / "samples", config.sample_every, seed=config.seed))
    if config.tensorboard:
        log_dir = run_dir / "tensorboard"
        originals, labels = val_split.load_all(RECONSTRUCTION_COUNT)
        callbacks += [keras.callbacks.TensorBoard(str(log_dir), write_graph=False),
                      TensorBoardImages(log_dir, to_unit_interval(originals).numpy(),
                                        config.sample_every or config.epochs, seed=config.seed,
                                        labels=labels if config.conditional else None)]
    return callbacks


def _save_keras_file(model, path, chief):
    """Writes the whole VAE to `path` (a .keras file) in one rename, so a kill leaves no half file.

    Every worker saves, because reading the metrics' variables is a collective under multi-worker
    training; only the chief's file is kept.
    """
    try:
        with files.staged([path], keep=chief) as (staged,):
            model.save(staged)
    except OSError as error:
        if not is_disk_full(error):
            raise
        size = files.variables_bytes([*model.variables, *model.optimizer.variables])
        raise DiskFull(path.parent, "the model file", size, "the backups are intact.") from None


def _build(config, strategy, train_split):
    """The compiled VAE of the options' variant with its optimizer built, in the strategy's scope.

    A VampPrior's pseudo-inputs start as the first training images of the seed's order rather than
    the library's grey draw, so that the mixture's components start where the data's posteriors are.
    """
    with strategy.scope():
        model = build_vae(config.arch, train_split.image_shape, config.latent_dim, config.hidden_dim,
                          config.likelihood, config.beta, config.seed, classes=_classes(config, train_split),
                          objective=config.objective, iw_samples=config.iw_samples,
                          prior=None if config.prior == "auto" else config.prior,
                          pseudo_inputs=config.pseudo_inputs)
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.mixed_precision)
        model.compile(optimizer=optimizer, jit_compile=devices.resolve_jit_compile(config.jit_compile))
        model.optimizer.build(model.trainable_variables)
    if model.vamp_prior is not None:
        model.vamp_prior.assign_images(_first_training_images(config, train_split, model.pseudo_inputs))
    return model


def _first_training_images(config, train_split, count):
    """The first `count` images [count, H, W, C] in [0, 1] that training visits (epoch 0 of the seed's
    order, binarized as in training; repeated epochs if the split holds fewer)."""
    source = train_split.training_source(config.batch_size, config.seed, config.binarize)
    return to_unit_interval(next(iter(source.dataset().unbatch().batch(count))))


def _fit(config, strategy, model, splits, run_dir, chief, backup, callbacks):
    """Trains until config.epochs, turning the ways a run can stop into their errors; returns the history."""
    train_split, val_split = splits
    train_data = train_split.training_source(config.batch_size, config.seed, config.binarize,
                                             labels=config.conditional)
    val_dataset = val_split.evaluation_dataset(config.batch_size, config.binarize, labels=config.conditional)
    try:
        with (data.naming_bad_pictures(train_split, val_split, then=BAD_PICTURES_THEN),
              stop_on_signals(strategy, backup) as stop):
            trainer = Trainer(model, strategy, config.steps_per_execution, config.progress, backup,
                              config.backup_every_steps, stop)
            history = trainer.fit(train_data, val_dataset, config.epochs,
                                  [*_callbacks(config, run_dir, val_split, chief), *callbacks],
                                  resume=not config.restart)
            if stop.received is not None:  # during the last validation or backup: skip the export
                raise Preempted(stop.received, (
                    f"Stopped ({signal.Signals(stop.received).name}) after the last epoch, backed up in "
                    f"{backup.newest()[0]}. Rerun the same command to export it without training again."))
    except TrainingDiverged as error:
        error.args = (f"{error} Nothing was exported.",)
        raise
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
    return history


def _export(config, model, history, run_dir, chief, backup, skipped):
    """Saves model.keras and publishes the next version, once per run; returns the summary."""
    # The optimizer's step count proves that a resumed run neither replayed nor skipped a batch.
    summary = {"final": history[-1], "history": history, "steps": int(model.optimizer.iterations.numpy()),
               "version": None, "bound": model.bound}
    exported = run_dir / "export.json"
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
    version_files = {"config.json": _config_text(config, skipped, model.classes),
                     "metrics.json": metrics_text}
    try:
        summary["version"] = publish(config.export_dir, model, version_files, seed=config.seed)
    except DiskFull as error:
        error.args = (f"{error} The trained model is in the backup {backup.newest()[0]}: the rerun "
                      "exports it without training again.",)
        raise
    exported.write_text(json.dumps({"version": summary["version"], "epochs": len(history)}) + "\n")
    final = history[-1]
    print(f"Exported version {summary['version']} to {config.export_dir}/{{decoder,vae}}/; "
          f"final val_loss {final['val_loss']:.2f} nats/image, the negative {model.bound} "
          f"(reconstruction {final['val_reconstruction_loss']:.2f}, KL {final['val_kl_loss']:.2f}).")
    return summary


def _variant(model):
    """The model's variant, and the bound its `loss` is the negative of, for the log."""
    classes = "" if model.classes is None else f"conditional on {len(model.classes)} classes, "
    vamp = f" of {model.pseudo_inputs} pseudo-inputs" if model.prior == "vamp" else ""
    return f"Model: {classes}prior {model.prior}{vamp}; loss is the negative {model.bound}."


def _config_text(config, skipped, classes):
    """config.json: the options, the pictures left out of the splits and the classes of a
    --conditional run."""
    return json.dumps({**config.to_dict(), SKIPPED_KEY: skipped, CLASSES_KEY: classes}, indent=2) + "\n"


def train(config, callbacks=()):
    """Trains (or resumes) a VAE as `config` says, exports it, and returns a summary dict.

    Writes `config.json`, `metrics.json`, `model.keras`, backups and sample grids to `config.run_dir`,
    and the `decoder` and `vae` servables to `config.export_dir`; under multi-worker training only the chief
    writes them. Everything that can be wrong with the options or the data (every picture included)
    is checked before anything is written. The global dtype policy is left as it was found.

    Args:
        config: A `keras_vae.config.TrainConfig`.
        callbacks: More Keras callbacks for the training loop (e.g. `keras.callbacks.CSVLogger`).
    """
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(config, callbacks)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(config, callbacks):
    devices.configure_devices(config.gpu_memory_growth, config.deterministic)
    if config.check_numerics:
        tf.debugging.enable_check_numerics()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    train_split, val_split, skipped = _open_splits(config)
    run_dir = Path(config.run_dir)
    _check_run_dir(config, run_dir, skipped, _classes(config, train_split))
    chief = distribute.is_chief(strategy)
    # The policy in force when the layers are made sets their compute dtype.
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else f"mixed_{config.mixed_precision}"
    )
    model = _build(config, strategy, train_split)
    if chief:
        if config.restart:
            shutil.rmtree(run_dir / "backup", ignore_errors=True)
            (run_dir / "export.json").unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(_config_text(config, skipped, model.classes))
        print(f"Training {config.arch} VAE on {train_split.count} images of shape {train_split.image_shape} "
              f"({train_split.description}), validating on {val_split.count} ({val_split.description}), "
              f"{strategy.num_replicas_in_sync} replica(s).\n{_variant(model)}")
    backup = RunBackup(run_dir / "backup", model, chief)
    history = _fit(config, strategy, model, (train_split, val_split), run_dir, chief, backup, callbacks)
    return _export(config, model, history, run_dir, chief, backup, skipped)
