"""Publishing a VAE as versioned TensorFlow SavedModels that TensorFlow Serving loads.

Layout: <export_root>/decoder/<version>/ (generation only) and <export_root>/vae/<version>/ (the whole
model), each a SavedModel with the `serve` tag (signatures in keras_vae.serving.signatures), loadable
without this package, with a warm-up file `assets.extra/tf_serving_warmup_requests` that TensorFlow
Serving replays before serving a version, and `model.json`: what the model is (class names, prior,
objective), plain JSON that readers without TensorFlow can read. Both get the same version number.

TensorFlow Serving loads any all-digit folder it sees, even one still being written. So a version is
written under a hidden name (`.tmp-<version>-<pid>`, which the server ignores), loaded back and checked
against the in-memory model there, and only then renamed to its number: a numbered folder is complete
the moment it appears.
"""

import contextlib
import fcntl
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from keras_vae.errors import DiskFull, is_disk_full
from keras_vae.files import remove, size_on_disk, staged, variables_bytes
from keras_vae.serving.exported import METADATA_FILE, WARMUP_FILE, read_warmup, versions
from keras_vae.serving.functions import ServingModule, servable_layers
from keras_vae.serving.signatures import MODELS, SAMPLE_PNG

VALIDATION_TOLERANCE = 1e-5
# Under mixed precision the graph fuses and rounds 16-bit ops otherwise than eager execution does
# (bfloat16 keeps 8 significant bits): far above float32's differences, far below a wrong weight's.
HALF_PRECISION_TOLERANCE = 2e-2
# Graphs, warm-up records and files add under this many bytes per model (docs/serving.md).
SAVED_MODEL_OVERHEAD = 150_000


def write_warmup(path, model_name, module):
    """Writes one PredictionLog per signature of `module`, with its example inputs, into version `path`."""
    file = Path(path) / WARMUP_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(file)) as writer:
        for signature_name, inputs in module.examples.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _validate(path, module):
    """Checks the SavedModel at `path` answers its warm-up requests as the in-memory model does.

    The requests are replayed on the model loaded back from disk, as TensorFlow Serving replays them,
    and compared with the module's functions run eagerly on the Keras model: another path than the
    graph, and one that needs no graph of its own to be built.

    Raises:
        RuntimeError: if a signature has no warm-up request or the answers differ.
    """
    loaded = tf.saved_model.load(str(path))
    requests = read_warmup(path)
    if sorted(r.model_spec.signature_name for r in requests) != sorted(module.functions):
        raise RuntimeError(f"The warm-up requests of {path} do not cover its signatures.")
    for request in requests:
        name = request.model_spec.signature_name
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        expected = module.eager[name](**inputs)
        actual = loaded.signatures[name](**inputs)
        for key, value in expected.items():
            if key == SAMPLE_PNG.output():  # the pixels may differ by the 8-bit rounding
                pixels = [tf.io.decode_png(v).numpy().astype(int) for v in (actual[key], value)]
                agrees = pixels[0].shape == pixels[1].shape and np.abs(pixels[0] - pixels[1]).max() <= 1
            elif value.dtype == tf.string:  # class names
                agrees = actual[key].numpy().tolist() == value.numpy().tolist()
            else:
                tolerance = HALF_PRECISION_TOLERANCE if module.half_precision else VALIDATION_TOLERANCE
                agrees = np.allclose(actual[key].numpy(), value.numpy(), atol=tolerance)
            if not agrees:
                raise RuntimeError(f"Exported {path} disagrees with the in-memory model on {name}/{key}.")


def metadata(vae):
    """What `model.json` says of `vae`: {"classes": its class names or None, "prior", "objective",
    "iw_samples", "pseudo_inputs", "latent_dim", "image_shape"}."""
    return {"classes": None if vae.classes is None else list(vae.classes), "prior": vae.prior,
            "objective": vae.objective, "iw_samples": vae.iw_samples, "pseudo_inputs": vae.pseudo_inputs,
            "latent_dim": int(vae.latent_dim), "image_shape": [int(size) for size in vae.image_shape]}


def _stage(temporary, model_name, module, extra_files):
    """Writes and validates one version under its temporary name."""
    tf.saved_model.save(module, str(temporary), signatures=module.functions)
    for file_name, text in (extra_files or {}).items():
        (temporary / file_name).write_text(text)
    write_warmup(temporary, model_name, module)
    _validate(temporary, module)


@contextlib.contextmanager
def _lock(root):
    """Holds an exclusive lock on `root` (the kernel drops it if the holder dies, even by SIGKILL)."""
    with open(root / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _staging_name(root, name, version):
    """Where version `version` of model `name` is staged: `.tmp-<version>-<pid>`."""
    return root / name / f".tmp-{version}-{os.getpid()}"


def _recover(root):
    """Clears up after a killed publish; the caller holds the lock, so no publish is running.

    A publish killed between its two renames leaves one servable's version numbered and the other's
    staged, complete and validated. Each servable answers from one training on its own, so nothing
    mixes meanwhile; finishing the rename gives every version to both servables again. Any other
    staged folder may be incomplete: delete it.
    """
    for name in MODELS:
        for temporary in (root / name).glob(".tmp-*"):
            version = temporary.name.split("-")[1]
            final = root / name / version
            renamed_elsewhere = any((root / other / version).is_dir() for other in MODELS if other != name)
            if version.isdigit() and renamed_elsewhere and not final.exists():
                os.rename(temporary, final)
            else:
                remove(temporary)


def _size_of_a_version(root, present, vae):
    """Bytes a version takes on disk: those of the latest one, or an estimate from the weights."""
    if present:
        return size_on_disk(*(root / name / str(present[-1]) for name in MODELS))
    weights = [w for name in MODELS for layer in servable_layers(vae, name) for w in layer.weights]
    return variables_bytes(weights) + len(MODELS) * SAVED_MODEL_OVERHEAD


def publish(export_root, vae, files=None, seed=0):
    """Exports a VAE as the next version of the `decoder` and `vae` servables, complete or not at all.

    Args:
        export_root: The export root; versions go to `decoder/` and `vae/` below it.
        vae: The `keras_vae.VAE` to export.
        files: Optional {file name: text} written into each version folder (config, metrics), beside
            the `model.json` written here.
        seed: Seed of the example inputs used for the warm-up requests and to validate the export.

    Returns:
        The version number, the same for both servables.

    Raises:
        DiskFull: if the export root fills up; no partial version is left, earlier ones are intact.
    """
    root = Path(export_root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    modules = {name: ServingModule(vae, name, rng) for name in MODELS}
    files = {**(files or {}), METADATA_FILE: json.dumps(metadata(vae), indent=2) + "\n"}
    try:
        with _lock(root):
            _recover(root)
            version = 1 + max([number for name in MODELS for number in versions(root / name)] + [0])
            finals = [root / name / str(version) for name in MODELS]
            with staged(finals, [_staging_name(root, name, version) for name in MODELS]) as temporaries:
                for name, temporary in zip(MODELS, temporaries, strict=True):
                    _stage(temporary, name, modules[name], files)
    except Exception as error:
        if not is_disk_full(error):
            raise
        kept = versions(root / "decoder")
        raise DiskFull(
            root, "the export", _size_of_a_version(root, kept, vae),
            f"no partial version was left, and versions {kept} are intact." if kept else
            "no partial version was left.",
        ) from None
    return version
