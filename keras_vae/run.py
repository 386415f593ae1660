"""A whole training run as `train.py` performs it: data, strategy, model, backups, training, export."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vae import data, distribute, export, plots
from keras_vae.backup import RunBackup
from keras_vae.errors import UserError
from keras_vae.models import KLWarmup, build_vae
from keras_vae.training import Trainer, TrainingDiverged, make_optimizer, resolve_jit_compile

SAMPLE_GRID_SIZE = 64
RECONSTRUCTION_COUNT = 8


class WorkerLost(UserError):
    """Another worker of a multi-worker run stopped (preempted, crashed, unreachable)."""

    exit_status = 1


def _load_images(config):
    train_images, _ = data.load_split(config.train_split, config.dataset, config.data_dir)
    val_images, _ = data.load_split(config.val_split, config.dataset, config.data_dir)
    if val_images.shape[1:] != train_images.shape[1:]:
        raise UserError(f"Training images are {train_images.shape[1:]} but validation images are "
                        f"{val_images.shape[1:]}; use splits of one data set.")
    # Trainer.fit checks this too, but only after the run folder is written: fail before that.
    data.steps_per_epoch(len(train_images), config.batch_size)
    return train_images, val_images


def _check_run_dir(config, run_dir):
    """Refuses to resume a run that was started with other options (unless --restart)."""
    saved = run_dir / "config.json"
    if config.restart or not saved.exists() or not any((run_dir / "backup").glob("ckpt-*.index")):
        return
    try:
        config.check_resumable_from(json.loads(saved.read_text()))
    except json.JSONDecodeError as error:
        raise UserError(f"{saved} is damaged ({error}); start over with --restart.")


def _epoch_end_writer(config, model, run_dir, val_images):
    """Returns the on_epoch_end callback of the chief: sample grids and TensorBoard summaries.

    Every `sample_every` epochs (and after the last) it writes a grid of samples from fixed latents;
    with `--tensorboard` it also logs every epoch's metrics, and those samples with reconstructions
    of the first validation images (originals above reconstructions from the posterior means).
    """
    z = np.random.default_rng(config.seed).standard_normal((SAMPLE_GRID_SIZE, config.latent_dim))
    z = tf.constant(z, tf.float32)
    originals = tf.constant(val_images[:RECONSTRUCTION_COUNT], tf.float32) / 255.0
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if config.tensorboard else None

    def decode(latents):
        return tf.sigmoid(tf.cast(model.decoder(latents, training=False), tf.float32)).numpy()

    def on_epoch_end(epoch, record):
        step = epoch + 1
        pictures = config.sample_every and (step % config.sample_every == 0 or step == config.epochs)
        samples = decode(z) if pictures else None
        if samples is not None:
            plots.save_image_grid(samples, run_dir / "samples" / f"epoch_{step:03d}.png")
        if writer is None:
            return
        with writer.as_default(step=step):
            for name, value in record.items():
                if name != "epoch":
                    tf.summary.scalar(name, value)
            if samples is not None:
                reconstructions = decode(model.encoder(originals, training=False)[0])
                pairs = np.concatenate([originals.numpy(), reconstructions])
                tf.summary.image("samples", plots.image_grid(samples)[None])
                tf.summary.image("reconstructions", plots.image_grid(pairs, RECONSTRUCTION_COUNT)[None])
        writer.flush()

    return on_epoch_end


def train(config):
    """Trains (or resumes) a VAE as `config` says, exports it, and returns a summary dict.

    Writes `config.json`, `metrics.json`, backups and sample grids to `config.run_dir`, and the decoder
    and encoder to `config.export_dir`; under multi-worker training only the chief writes them.
    Everything that can be wrong with the options or the data is checked before anything is written.
    """
    if config.check_numerics:
        tf.debugging.enable_check_numerics()
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.strategy)
    distribute.check_global_batch(config.batch_size, strategy)
    train_images, val_images = _load_images(config)
    run_dir = Path(config.run_dir)
    _check_run_dir(config, run_dir)
    chief = distribute.is_chief(strategy)
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else f"mixed_{config.mixed_precision}"
    )
    with strategy.scope():
        model = build_vae(config.arch, train_images.shape[1:], config.latent_dim, config.hidden_dim,
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
        print(f"Training {config.arch} VAE on {len(train_images)} images of shape {train_images.shape[1:]}, "
              f"validating on {len(val_images)}, {strategy.num_replicas_in_sync} replica(s).")
    backup = RunBackup(run_dir / "backup", model, chief)
    trainer = Trainer(model, strategy, config.steps_per_execution, config.progress, backup,
                      config.backup_every_steps)
    try:
        history = trainer.fit(
            train_images, val_images, config.epochs, config.batch_size, config.seed,
            on_epoch_end=_epoch_end_writer(config, model, run_dir, val_images) if chief else None,
            resume=not config.restart, binarize_mode=config.binarize,
            callbacks=[KLWarmup(config.kl_warmup_epochs)] if config.kl_warmup_epochs else (),
        )
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
    if not chief:
        return summary
    done = json.loads(exported.read_text()) if exported.exists() else {}
    if done.get("epochs") == len(history):
        summary["version"] = done["version"]
        print(f"This run is already finished and exported as version {done['version']}; "
              "use --restart to train again, or a larger --epochs to train on.")
        return summary
    metrics_text = json.dumps(summary, indent=2) + "\n"
    (run_dir / "metrics.json").write_text(metrics_text)
    files = {"config.json": json.dumps(config.to_dict(), indent=2) + "\n", "metrics.json": metrics_text}
    summary["version"] = export.publish(config.export_dir, model.encoder, model.decoder, files,
                                        seed=config.seed)
    exported.write_text(json.dumps({"version": summary["version"], "epochs": len(history)}) + "\n")
    final = history[-1]
    print(f"Exported version {summary['version']} to {config.export_dir}/{{decoder,encoder}}/; "
          f"final val_loss {final['val_loss']:.2f} nats/image "
          f"(reconstruction {final['val_reconstruction_loss']:.2f}, KL {final['val_kl_loss']:.2f}).")
    return summary
