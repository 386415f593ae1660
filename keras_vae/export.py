"""Publishing the decoder and encoder as versioned TensorFlow SavedModels that TensorFlow Serving loads.

Layout: <export_root>/decoder/<version>/ and <export_root>/encoder/<version>/, each a SavedModel with the
`serve` tag (signatures in keras_vae.signatures), loadable without this package, with a warm-up file
`assets.extra/tf_serving_warmup_requests` that TensorFlow Serving replays before serving a version.

TensorFlow Serving loads any all-digit folder it sees, even one still being written. So a version is
written under a hidden name (`.tmp-<version>-<pid>`, which the server ignores), loaded back and checked
against the in-memory model there, and only then renamed to its number: a numbered folder is complete
the moment it appears.
"""

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from keras_vae.errors import DiskFull, UserError, is_disk_full
from keras_vae.signatures import decoder_module, encoder_module

VALIDATION_TOLERANCE = 1e-5
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# Also the order of the renames, which `_recover` relies on.
MODELS = ("decoder", "encoder")
SAVED_MODEL_OVERHEAD = 150_000


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
            f"{detail}). Choose another version with --version (present: {versions(path.parent)}), or "
            "export again with `python train.py`."
        ) from error


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


def read_warmup(path):
    """The PredictRequests of the warm-up file in version `path`, in file order."""
    records = tf.data.TFRecordDataset(str(Path(path) / WARMUP_FILE))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request for r in records]


def _validate(path, module):
    """Checks the SavedModel at `path` answers its warm-up requests as `module` does in memory.

    The requests are replayed on the model loaded back from disk, as TensorFlow Serving replays them.

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
        expected = module.functions[name](**inputs)
        actual = loaded.signatures[name](**inputs)
        for key, value in expected.items():
            if value.dtype == tf.string:  # PNG bytes: the pixels may differ by the 8-bit rounding
                pixels = [tf.io.decode_png(v).numpy().astype(int) for v in (actual[key], value)]
                agrees = pixels[0].shape == pixels[1].shape and np.abs(pixels[0] - pixels[1]).max() <= 1
            else:
                agrees = np.allclose(actual[key].numpy(), value.numpy(), atol=VALIDATION_TOLERANCE)
            if not agrees:
                raise RuntimeError(f"Exported {path} disagrees with the in-memory model on {name}/{key}.")


def _stage(temporary, model_name, module, files):
    """Writes and validates one version under its temporary name."""
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(temporary), signatures=module.functions)
    for file_name, text in (files or {}).items():
        (temporary / file_name).write_text(text)
    write_warmup(temporary, model_name, module)
    _validate(temporary, module)


@contextlib.contextmanager
def _lock(root):
    """Holds an exclusive lock on `root` (the kernel drops it if the holder dies, even by SIGKILL)."""
    with open(root / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _recover(root):
    """Clears up after a killed publish; the caller holds the lock, so no publish is running.

    A publish killed between its two renames leaves the decoder's version numbered and the encoder's
    staged, complete and validated: finish it. Any other staged folder may be incomplete: delete it.
    """
    for name in MODELS:
        for temporary in (root / name).glob(".tmp-*"):
            version = temporary.name.split("-")[1]
            final = root / name / version
            renamed_elsewhere = any((root / other / version).is_dir() for other in MODELS if other != name)
            if version.isdigit() and renamed_elsewhere and not final.exists():
                os.rename(temporary, final)
            else:
                shutil.rmtree(temporary, ignore_errors=True)


def _size_of_a_version(root, present, vae):
    """Bytes a version takes on disk: those of the latest one, or an estimate from the weights."""
    if present:
        folders = [root / name / str(present[-1]) for name in MODELS]
        return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    # The encoder's SavedModel holds the decoder too (its reconstruct signature); graphs, warm-up
    # records and files add under 150 KB per model (measured for mlp and conv).
    weights = sum(w.nbytes for part in (vae.encoder, vae.decoder, vae.decoder) for w in part.get_weights())
    return weights + len(MODELS) * SAVED_MODEL_OVERHEAD


def _write_version(root, version, modules, files):
    """Stages, validates and renames both models into `version`; leaves no staged folder behind."""
    staged = {name: root / name / f".tmp-{version}-{os.getpid()}" for name in MODELS}
    renamed = []
    try:
        for name in MODELS:
            _stage(staged[name], name, modules[name], files)
        for name in MODELS:
            os.rename(staged[name], root / name / str(version))
            renamed.append(name)
    except BaseException:
        # Undo the first rename when the second fails, so no numbered folder outlives the failure.
        for name in renamed:
            os.rename(root / name / str(version), staged[name])
        raise
    finally:
        for temporary in staged.values():
            shutil.rmtree(temporary, ignore_errors=True)


def publish(export_root, vae, files=None, seed=0):
    """Exports a VAE's decoder and encoder as the next version, complete or not at all.

    Args:
        export_root: The export root; versions go to `decoder/` and `encoder/` below it.
        vae: The `keras_vae.VAE` to export.
        files: Optional {file name: text} written into each version folder (config, metrics).
        seed: Seed of the example inputs used for the warm-up requests and to validate the export.

    Returns:
        The version number, the same for decoder and encoder.

    Raises:
        DiskFull: if the export root fills up; no partial version is left, earlier ones are intact.
    """
    root = Path(export_root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    modules = {"decoder": decoder_module(vae, rng), "encoder": encoder_module(vae, rng)}
    try:
        with _lock(root):
            _recover(root)
            version = 1 + max(versions(root / "decoder") + versions(root / "encoder") + [0])
            _write_version(root, version, modules, files)
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
