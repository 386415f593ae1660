"""Trains each model variant for two epochs under a strategy: one worker of tests/test_multiworker.py.

    TF_CONFIG=... python tests/variants_worker.py OUT_DIR IMAGES.npy '{"iwae": {"objective": "iwae", ...}}'

runs under `MultiWorkerMirroredStrategy` and writes OUT_DIR/worker<task index>/<variant>.npz (the
trained weights) and .json (the history); the test calls `train_variants` itself for the one-device run.
Importing conftest would split this process's CPU into two devices, so this file does without it.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_vae import data  # noqa: E402
from keras_vae.models import build_vae  # noqa: E402
from keras_vae.training import Trainer  # noqa: E402

BATCH_SIZE = 16


def train_variants(strategy, images, variants):
    """{variant: (trained weights, history without timings)} of two epochs of each variant.

    Args:
        strategy: The strategy to train under.
        images: uint8 images [N, H, W, 1]; a conditional variant learns the labels i % classes.
        variants: {name: options for `build_vae`}.
    """
    results = {}
    for name, options in variants.items():
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build_vae("mlp", images.shape[1:], latent_dim=2, hidden_dim=8, seed=0, **options)
            model.compile(optimizer=keras.optimizers.SGD(0.05))
            model.optimizer.build(model.trainable_variables)
        labels = None if model.classes is None else np.arange(len(images)) % len(model.classes)
        history = Trainer(model, strategy, progress=False).fit(
            data.InMemoryImages(images, BATCH_SIZE, seed=3, labels=labels),
            data.evaluation_dataset(images[:32], BATCH_SIZE, labels=None if labels is None else labels[:32]),
            epochs=2)
        timeless = [{k: v for k, v in record.items() if not k.endswith("_seconds")} for record in history]
        results[name] = ([v.numpy() for v in model.trainable_variables], timeless)
    return results


if __name__ == "__main__":
    images, variants = np.load(sys.argv[2]), json.loads(sys.argv[3])
    out_dir = Path(sys.argv[1]) / f"worker{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (weights, history) in train_variants(
            tf.distribute.MultiWorkerMirroredStrategy(), images, variants).items():
        np.savez(out_dir / f"{name}.npz", *weights)
        (out_dir / f"{name}.json").write_text(json.dumps(history))
