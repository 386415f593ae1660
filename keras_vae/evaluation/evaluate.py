"""Evaluating a VAE on a data split: `evaluate_vae`, and what `evaluate.py` runs.

`evaluate.py` evaluates the exported SavedModels (`keras_vae.ExportedVAE`), so the numbers describe
exactly what is deployed; the likelihood comes from the config.json exported beside them.
"""

import json
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae import data, devices
from keras_vae.data import binarize
from keras_vae.errors import UserError
from keras_vae.evaluation import estimators, figures
from keras_vae.serving.exported import ExportedVAE

RESULTS_FILE = "evaluation.json"
PROGRESS_SECONDS = 10.0
PIXELS = {"none": "grey levels", "static": "statically binarized", "dynamic": "dynamically binarized"}


def estimate_split(estimate, images, batch_size, binarize_mode="none", seed=0, labels=None):
    """Runs `estimate` (see `estimators.importance_estimator`) over uint8 images in batches.

    Args:
        labels: The images' class labels [N], for the estimates of a class-conditional model.

    Returns:
        The per-image outputs of `estimate`, concatenated over the batches.
    """
    outputs, start, last_report = [], 0, time.perf_counter()
    for batch in data.evaluation_dataset(images, batch_size, labels=labels):
        batch, *batch_labels = batch if labels is not None else (batch,)
        indices = tf.range(start, start + tf.shape(batch)[0], dtype=tf.int64)
        outputs.append({key: value.numpy() for key, value in
                        estimate(binarize(batch, indices, binarize_mode, seed), *batch_labels).items()})
        start += len(indices)
        if time.perf_counter() - last_report > PROGRESS_SECONDS:
            print(f"  {start}/{len(images)} images", flush=True)
            last_report = time.perf_counter()
    return {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}


def first_images(images, count, binarize_mode="none", seed=0):
    """The first `count` images in [0, 1] exactly as `estimate_split` evaluated them."""
    count = min(count, len(images))
    pixels = next(iter(data.evaluation_dataset(images[:count], count)))
    # Draws depend only on each image's index and the seed, so this repeats the evaluated draws.
    return binarize(pixels, tf.range(count, dtype=tf.int64), binarize_mode, seed).numpy()


def summarize(outputs, image_shape):
    """Means and standard errors (nats per image), bits per dimension and active units."""
    per_image = {
        "negative_elbo": outputs["reconstruction"] + outputs["kl"],
        "reconstruction": outputs["reconstruction"],
        "kl": outputs["kl"],
        "nll": outputs["nll"],
    }
    count = len(outputs["nll"])
    active, variances = estimators.active_units(outputs["mean"])
    return {
        "nats_per_image": {key: float(np.mean(v, dtype=np.float64)) for key, v in per_image.items()},
        "standard_error": {key: float(np.std(v, dtype=np.float64, ddof=1) / math.sqrt(count))
                           if count > 1 else 0.0 for key, v in per_image.items()},
        "bits_per_dim": estimators.bits_per_dim(float(np.mean(outputs["nll"], dtype=np.float64)),
                                                math.prod(image_shape)),
        "active_units": active,
        "posterior_mean_variance": [float(v) for v in variances],
    }


def format_table(results):
    """The printed report: one line per number."""
    nats, errors = results["nats_per_image"], results["standard_error"]
    conditional = results.get("conditional")
    nll = (f"NLL -log p(x | y) (k={results['k']})" if conditional else
           f"NLL, importance-weighted (k={results['k']})")
    rows = [(f"negative ELBO (one sample{', given y' if conditional else ''})", "negative_elbo"),
            ("  reconstruction", "reconstruction"), ("  KL", "kl"), (nll, "nll")]
    lines = [f"{'':40s}{'nats/image':>12s}{'± s.e.':>10s}"]
    lines += [f"{label:40s}{nats[key]:12.2f}{errors[key]:10.2f}" for label, key in rows]
    lines += [f"{'bits/dim':40s}{results['bits_per_dim']:12.4f}",
              f"{'active units':40s}{results['active_units']:>12d} of {results['model']['latent_dim']}",
              f"{results['seconds']:.1f} s, {results['images_per_second']:.1f} images/s"]
    return "\n".join(lines)


def _estimate(model, images, k, batch_size, binarize_mode, seed, labels=None, what="The images"):
    """Per-image estimates (see `estimators.importance_estimator`) and the seconds they took.

    The prior's density is the model's own `log_prior` (an export's `log_prior` signature), whatever
    the prior; only the reported KL of a N(0, I) prior is its closed form.

    Raises:
        UserError: if the images' shape is not the model's (`what` names the images), or the model is
            class-conditional and there are no labels.
    """
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise UserError(f"{what} have shape {tuple(images.shape[1:])}, but the model takes "
                        f"{tuple(model.image_shape)}; evaluate it on the data it was trained on.")
    if getattr(model, "classes", None) is None:
        labels = None
    elif labels is None:
        raise UserError(f"The model is class-conditional (classes {', '.join(model.classes)}), so it "
                        f"evaluates -log p(x | y), which needs the class of every image: {what.lower()} "
                        "have no labels. Evaluate it on a split with labels (TFDS `label`, IDX label "
                        "files, class subfolders).")
    log_likelihood = estimators.decoder_log_likelihood(model.likelihood, model.decode_logits)
    estimate = estimators.importance_estimator(
        model.encode, log_likelihood, k, seed, estimators.samples_per_call(), model.log_prior,
        closed_form_kl=getattr(model, "prior", "normal") == "normal")
    start = time.perf_counter()
    outputs = estimate_split(estimate, images, batch_size, binarize_mode, seed, labels)
    return outputs, time.perf_counter() - start


def evaluate_vae(model, images, k=1000, batch_size=100, binarize_mode="none", seed=0, labels=None):
    """Measures how well a VAE models images: negative ELBO, importance-weighted NLL, bits/dim.

    For a class-conditional model every estimate is conditioned on the images' labels: the NLL is
    -log p(x | y).

    Args:
        model: A `keras_vae.Autoencoder`: a `keras_vae.VAE`, or an `ExportedVAE` (the deployed
            SavedModels).
        images: uint8 images [N, H, W, C].
        labels: Their class indices [N], for a class-conditional model.
        k: Importance samples per image for the NLL.
        batch_size: Images per step.
        binarize_mode: "none", "static" or "dynamic" (see `keras_vae.data.binarize`).
        seed: Seed of the latent draws and of dynamic binarization.

    Returns:
        A dict: `nats_per_image` and `standard_error` (negative_elbo, reconstruction, kl, nll),
        `bits_per_dim`, `active_units`, `posterior_mean_variance`, `k`, `seconds`, `images_per_second`.

    Raises:
        UserError: if the images' shape is not the model's, or a class-conditional model has no labels.
    """
    outputs, seconds = _estimate(model, images, k, batch_size, binarize_mode, seed, labels)
    return {**summarize(outputs, model.image_shape), "k": k, "seconds": seconds,
            "images_per_second": len(images) / seconds,
            "conditional": getattr(model, "classes", None) is not None}


def run(config):
    """Evaluates an exported model as `config` (an `EvaluateConfig`) says; returns the results dict.

    Writes evaluation.json and, unless `config.pictures` is off, the pictures to `config.out_dir`.
    """
    devices.configure_devices()
    model = ExportedVAE(config.export_dir, config.version)
    split = data.split_of(config, config.split)
    print(f"Reading {config.split!r} {split.description}.")
    with data.naming_bad_pictures(
            split, then="Nothing was evaluated: replace them, and run the same command again."):
        images, labels = split.load_all()
    given = ", conditional on the labels: -log p(x | y)" if model.classes is not None else ""
    print(f"Evaluating version {model.version} of {config.export_dir} ({model.likelihood} likelihood"
          f"{given}) on {len(images)} images of {config.split!r}, {PIXELS[config.binarize]}, k={config.k}.")
    outputs, seconds = _estimate(model, images, config.k, config.batch_size, config.binarize, config.seed,
                                 labels, what=f"The images of split {config.split!r}")
    conditional = model.classes is not None
    results = {
        "model": {"export_dir": config.export_dir, "version": model.version,
                  "likelihood": model.likelihood, "latent_dim": model.latent_dim,
                  "classes": None if model.classes is None else list(model.classes), "prior": model.prior},
        # The estimates are of log p(x | y), given each image's label: not comparable with log p(x).
        "conditional": conditional,
        "data": {"dataset": config.dataset, "data_dir": config.data_dir, "image_dir": config.image_dir,
                 "split": config.split,
                 "images": len(images), "binarize": config.binarize},
        "k": config.k,
        "seed": config.seed,
        **summarize(outputs, model.image_shape),
        "seconds": seconds,
        "images_per_second": len(images) / seconds,
        "pictures": [],
    }
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.pictures:
        shown = first_images(images, figures.IMAGES_SHOWN, config.binarize, config.seed)
        written = figures.write_pictures(out_dir, model, shown, outputs["mean"], labels, model.history,
                                         config.seed)
        results["pictures"] = [path.name for path in written]
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"Wrote {out_dir / RESULTS_FILE} and {len(results['pictures'])} pictures.")
    return results
