"""Quality of the model family on real MNIST: -ELBO, importance-weighted NLL and active units per variant.

    python benchmarks/quality.py --data-dir ~/data/mnist --select --variant conv-vamp   # choose
    python benchmarks/quality.py --data-dir ~/data/mnist --variant mlp-vamp-iwae5       # report

The protocol (docs/evaluation.md, "The model family"): options are chosen with `--select`, which
trains on `test[:7000]`, validates every epoch on `test[7000:8000]`, stops after `--patience` epochs
without a better validation -ELBO and measures the weights of the best epoch there; the final mode
trains the chosen options on `test[:8000]` (validating on its first 1,000 images) and measures
`test[8000:]` once. `--k 0 --checkpoint-dir D` trains only, saving the weights every 5 epochs, and
`--weights D/VARIANT-E.weights.h5 --epochs E` measures one of them: a final run can then go on while
the selection run that fixes its epochs is still training. One machine-readable line per variant:
    mode=final variant=mlp-vamp options="--prior vamp --pseudo-inputs 500" epochs=150 train_minutes=...
    images_per_s=... neg_elbo=... neg_elbo_se=... nll=... nll_se=... k=1000 bits_per_dim=...
    active_units=... latent_dim=20 eval_minutes=...
then the validation -ELBO (the loss) of every epoch. Grey-level pixels, Bernoulli likelihood, batch
128, Adam 1e-3, seed 0: `train.py`'s defaults. A VampPrior's pseudo-inputs start as M training images
drawn at random (Tomczak and Welling's initialisation from data). Active units: Burda et al.'s
criterion, Cov_x(E_q[z]) > 0.01.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Each variant: the build_vae arguments, its train.py options (for the table) and its epochs.
VARIANTS = {
    "mlp-elbo": ({"arch": "mlp"}, "--arch mlp", 150),
    "mlp-iwae5": ({"arch": "mlp", "objective": "iwae", "iw_samples": 5},
                  "--objective iwae --iw-samples 5", 150),
    "mlp-iwae10": ({"arch": "mlp", "objective": "iwae", "iw_samples": 10},
                   "--objective iwae --iw-samples 10", 150),
    "mlp-vamp": ({"arch": "mlp", "prior": "vamp", "pseudo_inputs": 500},
                 "--prior vamp --pseudo-inputs 500", 150),
    "mlp-vamp-iwae5": ({"arch": "mlp", "prior": "vamp", "pseudo_inputs": 500, "objective": "iwae",
                        "iw_samples": 5}, "--prior vamp --pseudo-inputs 500 --objective iwae --iw-samples 5",
                       100),
    "conv-elbo": ({"arch": "conv"}, "--arch conv", 65),
    "conv-vamp": ({"arch": "conv", "prior": "vamp", "pseudo_inputs": 500},
                  "--arch conv --prior vamp --pseudo-inputs 500", 65),
}
SPLITS = {"select": ("test[:7000]", "test[7000:8000]"), "final": ("test[:8000]", "test[8000:]")}
BATCH_SIZE = 128
IMAGE_SHAPE = (28, 28, 1)


def best_weights(patience):
    """A Keras callback that keeps the weights of the epoch with the lowest validation loss (in its
    `weights`, `epoch` and `loss`), and stops training after `patience` epochs without a new best."""
    import keras

    class BestWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.loss, self.epoch, self.weights = float("inf"), 0, None

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < self.loss:
                self.loss, self.epoch, self.weights = logs["val_loss"], epoch + 1, self.model.get_weights()
            elif epoch + 1 - self.epoch >= patience:
                self.model.stop_training = True

    return BestWeights()


def checkpoints(folder, variant, every=5):
    """A Keras callback that saves the weights every `every` epochs as FOLDER/VARIANT-EPOCH.weights.h5,
    so that the final run's epochs can be fixed by a selection run that ends later."""
    import keras

    class Checkpoints(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every == 0:
                self.model.save_weights(Path(folder) / f"{variant}-{epoch + 1}.weights.h5")

    Path(folder).mkdir(parents=True, exist_ok=True)
    return Checkpoints()


def build(variant, train_images, seed=0):
    """The compiled VAE of `variant`; a VampPrior's pseudo-inputs are drawn from `train_images`."""
    import numpy as np

    from keras_vae.devices import resolve_jit_compile
    from keras_vae.models import build_vae
    from keras_vae.training import make_optimizer

    arguments = dict(VARIANTS[variant][0])
    model = build_vae(arguments.pop("arch"), IMAGE_SHAPE, seed=seed, **arguments)
    if model.prior == "vamp":
        chosen = np.random.default_rng(seed).choice(len(train_images), model.pseudo_inputs, replace=False)
        model.vamp_prior.assign_images(train_images[chosen].astype("float32") / 255.0)
    model.compile(optimizer=make_optimizer("adam", 1e-3), jit_compile=resolve_jit_compile("auto"))
    model.optimizer.build(model.trainable_variables)
    return model


def run_variant(variant, mode, data_dir, epochs, k, patience, checkpoint_dir=None, weights=None):
    """Trains `variant` on the mode's training split (or loads its `weights` after `epochs` epochs)
    and measures it on its evaluation split (k = 0: not at all)."""
    from keras_vae import data
    from keras_vae.training import Trainer, distribute

    _, options, default_epochs = VARIANTS[variant]
    epochs = epochs or default_epochs
    train_split, eval_split = SPLITS[mode]
    train_images, _ = data.load_split(train_split, data_dir=data_dir)
    eval_images, _ = data.load_split(eval_split, data_dir=data_dir)
    model = build(variant, train_images)
    trainer = Trainer(model, distribute.make_strategy("auto"), steps_per_execution=10, progress=False)
    line = {"mode": mode, "variant": variant, "options": options, "epochs": epochs}
    if weights is not None:
        model.load_weights(weights)
        return line | evaluated(model, eval_images, k)
    best = best_weights(patience) if mode == "select" else None
    callbacks = [best] if best else []
    callbacks += [checkpoints(checkpoint_dir, variant)] if checkpoint_dir else []
    # The final mode validates on training images: test[8000:] is measured once, at the end.
    validation = eval_images if mode == "select" else train_images[:1000]
    start = time.perf_counter()
    history = trainer.fit(data.InMemoryImages(train_images, BATCH_SIZE),
                          data.evaluation_dataset(validation, 500), epochs, callbacks, resume=False)
    seconds = sum(record["train_seconds"] for record in history)
    trained = data.steps_per_epoch(len(train_images), BATCH_SIZE) * BATCH_SIZE * len(history)
    line.update(epochs=len(history), train_minutes=round((time.perf_counter() - start) / 60, 1),
                images_per_s=round(trained / seconds),
                val_loss_per_epoch=[round(record["val_loss"], 2) for record in history])
    if best is not None:
        line.update(best_epoch=best.epoch, best_val_loss=round(best.loss, 2),
                    last_val_loss=round(history[-1]["val_loss"], 2))
        model.set_weights(best.weights)
    return line | (evaluated(model, eval_images, k) if k else {})


def evaluated(model, images, k):
    """-ELBO, NLL (k importance samples) and active units of `model` on uint8 `images`."""
    from keras_vae.evaluation import evaluate_vae

    start = time.perf_counter()
    results = evaluate_vae(model, images, k=k)
    nats, errors = results["nats_per_image"], results["standard_error"]
    return {"neg_elbo": round(nats["negative_elbo"], 2), "neg_elbo_se": round(errors["negative_elbo"], 2),
            "nll": round(nats["nll"], 2), "nll_se": round(errors["nll"], 2), "k": k,
            "bits_per_dim": round(results["bits_per_dim"], 4), "active_units": results["active_units"],
            "latent_dim": model.latent_dim, "eval_minutes": round((time.perf_counter() - start) / 60, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST IDX files (t10k-*)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                        help="variant(s) to run (default: all)")
    parser.add_argument("--select", action="store_true",
                        help="the selection protocol: train on test[:7000], measure on test[7000:8000]")
    parser.add_argument("--epochs", type=int, help="epochs (default: the variant's)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples of the NLL (0: train only)")
    parser.add_argument("--checkpoint-dir", help="save the weights every 5 epochs in this folder")
    parser.add_argument("--weights", help="evaluate these saved weights (of --epochs epochs), no training")
    parser.add_argument("--patience", type=int, default=10,
                        help="--select stops after this many epochs without a better validation -ELBO")
    args = parser.parse_args()
    if (args.epochs is not None and args.epochs < 1) or args.k < 0:
        parser.error("--epochs must be positive, --k at least 0")
    if args.weights and (len(args.variant or []) != 1 or not args.epochs):
        parser.error("--weights evaluates one --variant, trained for --epochs")
    from keras_vae import devices

    devices.configure_devices()
    for variant in args.variant or list(VARIANTS):
        line = run_variant(variant, "select" if args.select else "final", args.data_dir, args.epochs, args.k,
                           args.patience, args.checkpoint_dir, args.weights)
        curve = line.pop("val_loss_per_epoch", None)
        print(" ".join(f"{key}={json.dumps(value) if key == 'options' else value}"
                       for key, value in line.items()), flush=True)
        if curve:
            print(f"val_loss_per_epoch variant={variant} {json.dumps(curve)}", flush=True)


if __name__ == "__main__":
    main()
