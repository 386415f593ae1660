"""Reading exported versions: finding them, loading one with the signatures it must have, `ExportedVAE`.

Layout: <export_root>/decoder/<version>/ and <export_root>/vae/<version>/, SavedModels with the
signatures of `keras_vae.serving.signatures`, written by `keras_vae.serving.publish`. Exports of
keras_vae before the `vae` servable hold <export_root>/encoder/<version>/ instead (its `serving_default`
encodes, and it has `reconstruct`); `ExportedVAE` reads those too, with the decoder of the same version.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from keras_vae.errors import UserError
from keras_vae.models import priors
from keras_vae.models.inputs import checked_labels
from keras_vae.models.losses import RECONSTRUCTION_LOSSES
from keras_vae.serving import signatures as table

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# What the model is (`keras_vae.serving.publish.metadata`); exports before the model family have none.
METADATA_FILE = "model.json"


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
        require: Names of the signatures the version must have.

    Returns:
        (the loaded SavedModel, the version folder).

    Raises:
        UserError: if there is no such version, it is damaged, or it lacks a signature.
    """
    path = version_dir(model_dir, version)
    loaded = load(path)
    missing = [name for name in require if name not in loaded.signatures]
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


def call(signature, function, **inputs):
    """Runs a loaded signature `function` on inputs cast to the dtypes of `signature`; returns its outputs."""
    dtypes = {tensor.name: tensor.dtype for tensor in signature.inputs}
    return function(**{name: tf.cast(value, dtypes[name]) for name, value in inputs.items()})


# Where an export before the `vae` servable keeps each signature: (servable, name in its SavedModel).
LEGACY = {table.DECODE: ("decoder", table.DEFAULT_KEY), table.LOGITS: ("decoder", "logits"),
          table.SAMPLE: ("decoder", "sample"), table.ENCODE: ("encoder", table.DEFAULT_KEY),
          table.RECONSTRUCT: ("encoder", "reconstruct")}


def complete_versions(root):
    """The versions of export root `root` that hold a whole model: vae/<N>, or decoder/<N> and encoder/<N>."""
    legacy = set(versions(root / "decoder")) & set(versions(root / "encoder"))
    return sorted(set(versions(root / "vae")) | legacy)


def _open_model(root, version):
    """({Signature: loaded function}, [loaded SavedModels], the folder of config.json) of one version."""
    present = complete_versions(root)
    if not present:
        raise UserError(
            f"No exported model in {root / 'vae'}: export one first (`python train.py` does), or point "
            "`export_dir` at the export root (the folder holding decoder/ and vae/)."
        )
    version = present[-1] if version is None else version
    if version in versions(root / "vae"):
        loaded, path = load_version(root / "vae", version, [s.key("vae") for s in LEGACY])
        every = table.of_model("vae", conditional=True).values()
        functions = {s: loaded.signatures[s.key("vae")] for s in every if s.key("vae") in loaded.signatures}
        return functions, [loaded], path
    if version not in present:
        raise UserError(f"No version {version} in {root}; present: {present}.")
    parts = {model: load_version(root / model, version, [key for m, key in LEGACY.values() if m == model])
             for model in ("decoder", "encoder")}
    functions = {s: parts[model][0].signatures[key] for s, (model, key) in LEGACY.items()}
    return functions, [loaded for loaded, _ in parts.values()], parts["decoder"][1]


def read_classes(version_path):
    """The class names in a version's `model.json` (a tuple), or None: not class-conditional, or
    exported before the model family (whose models were not)."""
    classes = (read_json(Path(version_path) / METADATA_FILE) or {}).get("classes")
    return None if classes is None else tuple(classes)


def _batch(examples):
    """The number of examples of an array or a tensor (symbolic too, in the evaluation's graphs)."""
    return tf.shape(examples)[0]


class ExportedVAE:
    """One exported version of a VAE, loaded as deployed (`keras_vae.Autoencoder`).

    Its methods run the version's serving signatures and answer as `keras_vae.VAE`'s do, with the
    same types (float32 tensors) and the same `labels` (class indices, one for all examples or one per
    example, for a class-conditional export), so pictures and evaluation take either. Everything comes
    from the `vae` servable, one SavedModel, so encoder and decoder are always of one training (for an
    export older than the `vae` servable: its encoder/ and decoder/ of the same version).

    Args:
        export_dir: The export root, holding vae/<version>/ (or encoder/ and decoder/<version>/).
        version: The version (default: the latest).

    Attributes:
        classes: The class names of a class-conditional export (from its model.json), else None.
        prior: "normal", "class" or "vamp" (exports before the model family: "normal").

    Raises:
        UserError: when there is no export, no such version, or no likelihood in its config.json.
    """

    def __init__(self, export_dir, version=None):
        root = Path(export_dir)
        # The SavedModels are kept: their signatures stop working once they are garbage-collected.
        self._functions, self._saved_models, self.path = _open_model(root, version)
        self.version = int(self.path.name)
        config = read_json(self.path / "config.json") or {}
        self.likelihood = config.get("likelihood")
        if self.likelihood not in RECONSTRUCTION_LOSSES:
            raise UserError(
                f"{self.path / 'config.json'} does not name the likelihood the model was "
                f"trained with (bernoulli or gaussian; found {self.likelihood!r}); export models with "
                "train.py, which writes it."
            )
        self.history = (read_json(self.path / "metrics.json") or {}).get("history")
        self.classes = read_classes(self.path)
        self.prior = (read_json(self.path / METADATA_FILE) or {}).get("prior", "normal")
        # Read from the outputs: the inputs may be declared with an unknown shape (checked in the graph).
        logits = self._functions[table.LOGITS].structured_outputs[table.LOGITS.output()]
        self.image_shape = tuple(logits.shape[1:])
        self.latent_dim = self._functions[table.ENCODE].structured_outputs[table.ENCODE.output()].shape[-1]

    def _run(self, signature, **inputs):
        if signature not in self._functions:
            raise UserError(f"Version {self.version} in {self.path.parent.parent} was exported before the "
                            f"`{signature.name}` signature existed: export the model again.")
        return call(signature, self._functions[signature], **inputs)

    def _labelled(self, signature, batch, labels, **inputs):
        """Runs `signature` on `inputs` and, for a class-conditional export, the labels of `batch`
        examples, checked as `keras_vae.VAE` checks them (the same messages)."""
        labels = checked_labels(labels, self.classes, batch)
        return self._run(signature, **inputs, **({} if labels is None else {"labels": labels}))

    def encode(self, images, labels=None):
        outputs = self._labelled(table.ENCODE, _batch(images), labels, images=images)
        return tuple(outputs[name] for name in table.ENCODE.output_names())

    def decode_logits(self, z, labels=None):
        return self._labelled(table.LOGITS, _batch(z), labels, z=z)[table.LOGITS.output()]

    def decode(self, z, labels=None):
        return self._labelled(table.DECODE, _batch(z), labels, z=z)[table.DECODE.output()]

    def sample(self, n, seed=None, labels=None):
        """n images of the exported `sample` signature, as `keras_vae.VAE.sample` draws them (labels:
        one class for all, or one per image); without a seed, one from NumPy's generator."""
        if seed is None:
            seed = int(np.random.randint(2**31))
        per_image = checked_labels(labels, self.classes, n)
        if per_image is None:
            return self._run(table.SAMPLE, n=n, seed=seed)[table.SAMPLE.output()]
        # The signature draws n images of each asked class, image i of every class from the same
        # noise as `VAE.sample`'s image i: image i here is image i of its own class's n.
        asked, row = np.unique(per_image.numpy(), return_inverse=True)
        images = self._run(table.SAMPLE, n=n, seed=seed, labels=asked)[table.SAMPLE.output()]
        return tf.gather(images, row * n + np.arange(n))

    def reconstruct(self, images, labels=None):
        outputs = self._labelled(table.RECONSTRUCT, _batch(images), labels, images=images)
        return outputs[table.RECONSTRUCT.output()]

    def interpolate(self, images_a, images_b, steps, labels=None):
        """`keras_vae.VAE.interpolate`, by the exported `interpolate` signature."""
        return self._labelled(table.INTERPOLATE, _batch(images_a), labels, images_a=images_a,
                              images_b=images_b, steps=steps)[table.INTERPOLATE.output()]

    def analogy(self, images_a, images_b, images_c, labels=None):
        """`keras_vae.VAE.analogy`, by the exported `analogy` signature."""
        return self._labelled(table.ANALOGY, _batch(images_a), labels, images_a=images_a, images_b=images_b,
                              images_c=images_c)[table.ANALOGY.output()]

    def log_prior(self, z, labels=None):
        """log p(z) (log p(z | y) with labels), float32 [batch], by the exported `log_prior` signature.

        Exports before it had the N(0, I) prior, whose density is computed here.
        """
        if table.LOG_PRIOR not in self._functions:
            checked_labels(labels, self.classes, _batch(z))
            return priors.log_standard_normal(tf.convert_to_tensor(z, tf.float32))
        return self._labelled(table.LOG_PRIOR, _batch(z), labels, z=z)[table.LOG_PRIOR.output()]
