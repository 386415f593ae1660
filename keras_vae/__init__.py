"""keras_vae: a variational autoencoder for TensorFlow 2 / Keras 3 that is correct under tf.distribute.

    import keras_vae
    vae = keras_vae.build_vae("mlp", (28, 28, 1))
    vae.compile(optimizer="adam")
    vae.fit(images, epochs=10, batch_size=128)      # images: float32 in [0, 1], [N, 28, 28, 1]
    mean, log_var = vae.encode(images[:8])
    pictures = vae.sample(16, seed=0)
    keras_vae.publish("saved_models", vae)           # SavedModels for TensorFlow Serving

Names are imported on first use, so the command-line tools can answer `--help` before TensorFlow loads.
"""

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "VAE": "keras_vae.models",
    "build_vae": "keras_vae.models",
    "build_encoder": "keras_vae.models",
    "build_decoder": "keras_vae.models",
    "Sampling": "keras_vae.layers",
    "KLWarmup": "keras_vae.callbacks",
    "SampleGrid": "keras_vae.callbacks",
    "TensorBoardImages": "keras_vae.callbacks",
    "load_vae": "keras_vae.saving",
    "publish": "keras_vae.export",
    "ExportedVAE": "keras_vae.evaluate",
    "evaluate_vae": "keras_vae.evaluate",
    "InMemoryImages": "keras_vae.data",
    "Trainer": "keras_vae.training",
    "TrainConfig": "keras_vae.config",
    "train": "keras_vae.run",
    "UserError": "keras_vae.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
