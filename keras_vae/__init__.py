"""keras_vae: a variational autoencoder for TensorFlow 2 / Keras 3 that is correct under tf.distribute.

    import keras_vae
    vae = keras_vae.build_vae("mlp", (28, 28, 1))
    vae.compile(optimizer="adam")
    vae.fit(images, epochs=10, batch_size=128)      # images: float32 in [0, 1], [N, 28, 28, 1]
    mean, log_var = vae.encode(images[:8])
    pictures = vae.sample(16, seed=0)
    keras_vae.publish("saved_models", vae)           # SavedModels for TensorFlow Serving

Names are imported on first use, so the command-line tools answer `--help` before TensorFlow loads.
The rooms, from the lowest (see docs/development.md): `errors`, `config`, `files`, `images`,
`devices`, `models/`, `data/`, `serving/`, `training/` and `evaluation/`, `cli`.
"""

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what tools and IDEs read; at run time `__getattr__` imports the same names
    from keras_vae.config import TrainConfig as TrainConfig
    from keras_vae.data import InMemoryImages as InMemoryImages
    from keras_vae.errors import ServingError as ServingError
    from keras_vae.errors import UserError as UserError
    from keras_vae.evaluation import evaluate_vae as evaluate_vae
    from keras_vae.models import VAE as VAE
    from keras_vae.models import Autoencoder as Autoencoder
    from keras_vae.models import Sampling as Sampling
    from keras_vae.models import build_decoder as build_decoder
    from keras_vae.models import build_encoder as build_encoder
    from keras_vae.models import build_vae as build_vae
    from keras_vae.models import load_vae as load_vae
    from keras_vae.serving import GrpcClient as GrpcClient
    from keras_vae.serving import RestClient as RestClient
    from keras_vae.serving.exported import ExportedVAE as ExportedVAE
    from keras_vae.serving.publish import publish as publish
    from keras_vae.training import KLWarmup as KLWarmup
    from keras_vae.training import RunBackup as RunBackup
    from keras_vae.training import SampleGrid as SampleGrid
    from keras_vae.training import TensorBoardImages as TensorBoardImages
    from keras_vae.training import Trainer as Trainer
    from keras_vae.training import stop_on_signals as stop_on_signals
    from keras_vae.training import train as train

# Public name -> the module it is imported from (the same as the block above; a test checks both).
_EXPORTS = {
    "VAE": "keras_vae.models",
    "Autoencoder": "keras_vae.models",
    "Sampling": "keras_vae.models",
    "build_vae": "keras_vae.models",
    "build_encoder": "keras_vae.models",
    "build_decoder": "keras_vae.models",
    "load_vae": "keras_vae.models",
    "KLWarmup": "keras_vae.training",
    "SampleGrid": "keras_vae.training",
    "TensorBoardImages": "keras_vae.training",
    "Trainer": "keras_vae.training",
    "RunBackup": "keras_vae.training",
    "stop_on_signals": "keras_vae.training",
    "train": "keras_vae.training",
    "TrainConfig": "keras_vae.config",
    "InMemoryImages": "keras_vae.data",
    "publish": "keras_vae.serving.publish",
    "ExportedVAE": "keras_vae.serving.exported",
    "RestClient": "keras_vae.serving",
    "GrpcClient": "keras_vae.serving",
    "evaluate_vae": "keras_vae.evaluation",
    "UserError": "keras_vae.errors",
    "ServingError": "keras_vae.errors",
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


# `keras.models.load_model` finds VAE and Sampling only if they are registered, and Keras imports no
# module of another package to look for a class. Importing the model here would make every command
# wait for TensorFlow before it can answer `--help`, so the registration runs as soon as Keras itself
# is imported: now, if it already is, or right after its import otherwise.
_MODEL_MODULE = "keras_vae.models"


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds `keras` as the other finders do, with a loader that imports our model after Keras's own.

    Asking for the spec does not mean loading it (TensorFlow asks for Keras's spec before it imports
    Keras), so the finder stays in place until Keras has actually been executed.
    """

    def __init__(self):
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            importlib.import_module(_MODEL_MODULE)

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    importlib.import_module(_MODEL_MODULE)
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
