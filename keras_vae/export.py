"""Exporting the decoder and encoder as versioned TensorFlow SavedModels.

Layout: <export_root>/decoder/<version>/ and <export_root>/encoder/<version>/, each a SavedModel with the
`serve` tag and a `serving_default` signature, loadable with `tf.saved_model.load` without this package.
A version is written under a hidden temporary name, checked against the in-memory model, and only then
renamed to its number, so a numbered folder is always complete (TensorFlow Serving loads any numbered
folder it sees).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae.errors import UserError

VALIDATION_TOLERANCE = 1e-5


class _Export(tf.Module):
    """A plain `tf.Module` that holds a Keras model's variables and its serving functions.

    `serve` becomes the `serving_default` signature; `extra` maps further signature names to functions
    taking the same input.
    """

    def __init__(self, model, input_spec, serve, extra=None):
        super().__init__()
        # Track the raw tf.Variables, not the Keras objects: the SavedModel then needs only TensorFlow.
        self.model_variables = [v.value for v in model.variables]
        self.serve = tf.function(serve, input_signature=[input_spec])
        self.extra = {name: tf.function(fn, input_signature=[input_spec])
                      for name, fn in (extra or {}).items()}

    def signatures(self):
        return {"serving_default": self.serve, **self.extra}


def decoder_export(decoder):
    """Wraps a decoder.

    Signatures: serving_default(z [batch, latent] float32) -> {images: [batch, H, W, C] in [0, 1]};
    logits(z) -> {logits: [batch, H, W, C]}, for exact log-likelihoods (see keras_vae.losses).
    """
    latent_dim = decoder.input_shape[-1]

    def logits(z):
        return {"logits": tf.cast(decoder(z, training=False), tf.float32)}

    def serve(z):
        return {"images": tf.sigmoid(logits(z)["logits"])}

    spec = tf.TensorSpec([None, latent_dim], tf.float32, name="z")
    return _Export(decoder, spec, serve, extra={"logits": logits})


def encoder_export(encoder):
    """Wraps an encoder: serving_default(images [batch, H, W, C] in [0, 1]) -> {mean, log_var}."""
    image_shape = tuple(encoder.input_shape[1:])

    def serve(images):
        mean, log_var = encoder(images, training=False)
        return {"mean": tf.cast(mean, tf.float32), "log_var": tf.cast(log_var, tf.float32)}

    return _Export(encoder, tf.TensorSpec((None, *image_shape), tf.float32, name="images"), serve)


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
            f"No exported model in {model_dir}: train one first with `python train.py`, or point "
            "--model-dir at a folder of numbered versions."
        )
    if version is None:
        version = present[-1]
    if version not in present:
        raise UserError(f"No version {version} in {model_dir}; present: {present}.")
    return Path(model_dir) / str(version)


def _validate(path, module, example):
    """Loads the SavedModel at `path` and checks it reproduces `module` on `example`."""
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"]
    name = module.serve.input_signature[0].name
    expected = module.serve(example)
    actual = loaded(**{name: example})
    for key, value in expected.items():
        if not np.allclose(actual[key].numpy(), value.numpy(), atol=VALIDATION_TOLERANCE):
            raise RuntimeError(f"Exported {path} disagrees with the in-memory model on {key!r}.")


def publish(export_root, encoder, decoder, files=None, seed=0):
    """Exports decoder and encoder as the next version, complete or not at all.

    Args:
        export_root: The export root; versions go to `decoder/` and `encoder/` below it.
        encoder, decoder: The Keras models to export.
        files: Optional {file name: text} written into each version folder (config, metrics).
        seed: Seed of the random inputs used to validate the export.

    Returns:
        The version number, the same for decoder and encoder.
    """
    root = Path(export_root)
    version = 1 + max(versions(root / "decoder") + versions(root / "encoder") + [0])
    rng = np.random.default_rng(seed)
    staged = []
    try:
        for name, module, example in (
            ("decoder", decoder_export(decoder), rng.standard_normal((3, decoder.input_shape[-1]))),
            ("encoder", encoder_export(encoder), rng.random((3, *encoder.input_shape[1:]))),
        ):
            temporary = root / name / f".tmp-{version}-{os.getpid()}"
            staged.append((temporary, root / name / str(version)))
            temporary.parent.mkdir(parents=True, exist_ok=True)
            tf.saved_model.save(module, str(temporary), signatures=module.signatures())
            for file_name, text in (files or {}).items():
                (temporary / file_name).write_text(text)
            _validate(temporary, module, tf.constant(example, tf.float32))
        for temporary, final in staged:
            os.rename(temporary, final)
    finally:
        for temporary, _ in staged:
            shutil.rmtree(temporary, ignore_errors=True)
    return version
