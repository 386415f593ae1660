"""Reading exported versions: finding them, loading one with the signatures it must have, `ExportedVAE`.

Layout: <export_root>/decoder/<version>/ and <export_root>/encoder/<version>/, SavedModels with the
signatures of `keras_vae.serving.signatures`, written by `keras_vae.serving.publish`.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from keras_vae.errors import UserError
from keras_vae.models.losses import RECONSTRUCTION_LOSSES
from keras_vae.serving import signatures as table

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


def versions(model_dir):
    """The version numbers present in `model_dir` (all-digit folder names), ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def version_dir(model_dir, version=None):
    """The folder of `version` (default: the latest) in `model_dir`.

    Raises:
        UserError: if there is no such version.
    """
    present = versions(model_dir)
    if not present:
        raise UserError(
            f"No exported model in {model_dir}: export one first (`python train.py` does, or "
            "`keras_vae.publish`), or point `model_dir` at a folder of numbered versions."
        )
    if version is None:
        version = present[-1]
    if version not in present:
        raise UserError(f"No version {version} in {model_dir}; present: {present}.")
    return Path(model_dir) / str(version)


def load(path):
    """`tf.saved_model.load` of a version folder.

    Raises:
        UserError: if the folder holds no complete SavedModel (a truncated variables file makes the
            checkpoint reader raise IndexError, a missing file OSError or NotFoundError).
    """
    try:
        return tf.saved_model.load(str(path))
    except (IndexError, OSError, ValueError, DecodeError, tf.errors.OpError) as error:
        path, detail = Path(path), (str(error).strip() or "no details").splitlines()[0]
        raise UserError(
            f"Cannot load the SavedModel in {path}: it is damaged or incomplete ({type(error).__name__}: "
            f"{detail}). Choose another `version` (present: {versions(path.parent)}), or export again."
        ) from error


def load_version(model_dir, version=None, require=()):
    """Loads a version of a model (default: the latest) and checks it has the signatures `require`.

    Keep the returned SavedModel: its signatures stop working once it is garbage-collected.

    Args:
        model_dir: The model's folder of numbered versions (e.g. saved_models/decoder).
        version: The version number, or None for the latest.
        require: `keras_vae.serving.signatures.Signature`s the version must have.

    Returns:
        (the loaded SavedModel, the version folder).

    Raises:
        UserError: if there is no such version, it is damaged, or it lacks a signature.
    """
    path = version_dir(model_dir, version)
    loaded = load(path)
    missing = [signature.name for signature in require if signature.name not in loaded.signatures]
    if missing:
        raise UserError(f"{path} has no {', '.join(missing)} signature (it has "
                        f"{', '.join(loaded.signatures)}): it was exported by an older keras_vae. Export "
                        "the model again.")
    return loaded, path


def read_warmup(path):
    """The PredictRequests of the warm-up file in version `path`, in file order."""
    records = tf.data.TFRecordDataset(str(Path(path) / WARMUP_FILE))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request for r in records]


def read_json(path):
    """The parsed JSON file at `path`, or None when there is no such file.

    Raises:
        UserError: if the file cannot be read or parsed.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"Cannot read {path}: {error}.")


def call(signature, loaded, **inputs):
    """Runs `signature` of a loaded SavedModel on inputs cast to the table's dtypes; returns its outputs."""
    dtypes = {tensor.name: tensor.dtype for tensor in signature.inputs}
    return loaded.signatures[signature.name](**{name: tf.cast(value, dtypes[name])
                                               for name, value in inputs.items()})


class ExportedVAE:
    """The exported encoder and decoder of one version, loaded as deployed (`keras_vae.Autoencoder`).

    Its methods run the version's serving signatures and answer as `keras_vae.VAE`'s do, with the
    same types (float32 tensors), so pictures and evaluation take either.

    Args:
        export_dir: The export root, holding decoder/<version>/ and encoder/<version>/.
        version: The version (default: the latest decoder version).

    Raises:
        UserError: when there is no export, no such version, or no likelihood in its config.json.
    """

    def __init__(self, export_dir, version=None):
        root = Path(export_dir)
        if not versions(root / "decoder"):
            raise UserError(
                f"No exported model in {root / 'decoder'}: export one first (`python train.py` does), "
                "or point `export_dir` at the export root (the folder holding decoder/ and encoder/)."
            )
        self.decoder, self.decoder_dir = load_version(root / "decoder", version,
                                                      require=(table.DECODE, table.LOGITS))
        self.version = int(self.decoder_dir.name)
        self.encoder, self.encoder_dir = load_version(root / "encoder", self.version, require=(table.ENCODE,))
        config = read_json(self.decoder_dir / "config.json") or {}
        self.likelihood = config.get("likelihood")
        if self.likelihood not in RECONSTRUCTION_LOSSES:
            raise UserError(
                f"{self.decoder_dir / 'config.json'} does not name the likelihood the model was "
                f"trained with (bernoulli or gaussian; found {self.likelihood!r}); export models with "
                "train.py, which writes it."
            )
        self.history = (read_json(self.decoder_dir / "metrics.json") or {}).get("history")
        # Read from the outputs: the inputs may be declared with an unknown shape (checked in the graph).
        logits = self.decoder.signatures[table.LOGITS.name].structured_outputs[table.LOGITS.output()]
        self.image_shape = tuple(logits.shape[1:])
        mean = self.encoder.signatures[table.ENCODE.name].structured_outputs[table.ENCODE.output()]
        self.latent_dim = mean.shape[-1]

    def encode(self, images):
        outputs = call(table.ENCODE, self.encoder, images=images)
        return tuple(outputs[name] for name in table.ENCODE.output_names())

    def decode_logits(self, z):
        return call(table.LOGITS, self.decoder, z=z)[table.LOGITS.output()]

    def decode(self, z):
        return call(table.DECODE, self.decoder, z=z)[table.DECODE.output()]

    def sample(self, n, seed=None):
        """n images of the exported `sample` signature; without a seed, one from NumPy's generator."""
        if seed is None:
            seed = int(np.random.randint(2**31))
        return call(table.SAMPLE, self.decoder, n=n, seed=seed)[table.SAMPLE.output()]

    def reconstruct(self, images):
        return call(table.RECONSTRUCT, self.encoder, images=images)[table.RECONSTRUCT.output()]
