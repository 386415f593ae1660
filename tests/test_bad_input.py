"""Every kind of bad input stops train.py with one clear message and exit status 2, writing nothing.

The command runs in this process (the `command` fixture), but for one case in a fresh one, as a user
runs it.
"""

import gzip

import numpy as np
import pytest

from conftest import run_script, synthetic_images, write_idx
from keras_vae.config import TrainConfig
from keras_vae.errors import UserError
from keras_vae.training import distribute


def _truncate(folder):
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:300])


def _wrong_magic(folder):
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8), 2049)


def _short_of_header(folder):
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-784]))


def _labels_of_other_length(folder):
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), 2049)


def _odd_image_size(folder):
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", synthetic_images(64, 27, 27)[..., 0], 2051)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").unlink()


CASES = {
    "missing file": (lambda f: (f / "train-images-idx3-ubyte.gz").unlink(), [], "train-images-idx3-ubyte"),
    "truncated file": (_truncate, [], "train-images-idx3-ubyte.gz"),
    "wrong magic number": (_wrong_magic, [], "magic number is 2049, expected 2051"),
    "size not matching the header": (_short_of_header, [], "truncated or corrupt"),
    "labels of another length": (_labels_of_other_length, [], "5 labels but"),
    "shape the architecture cannot take": (_odd_image_size, ["--arch", "conv"],
                                           "must be even and at least 8. Received: image_shape=(27, 27, 1)"),
    "empty split": (None, ["--val-split", "test[64:]"], "is empty"),
    "unparsable split": (None, ["--train-split", "train[:10"], "TFDS slicing syntax"),
    "fewer images than one batch": (None, ["--train-split", "train[:10]"], "fewer than one batch"),
    "non-positive epochs": (None, ["--epochs", "0"], "--epochs must be at least 1"),
    "non-positive batch size": (None, ["--batch-size", "-4"], "--batch-size must be at least 1"),
    "non-positive latent size": (None, ["--latent-dim", "0"], "--latent-dim must be at least 1"),
    "negative beta": (None, ["--beta", "-0.5"], "--beta must be at least 0.0"),
    "unknown option": (None, ["--latent", "3"], "unrecognized arguments: --latent"),
    "multi-worker without TF_CONFIG": (None, ["--strategy", "multiworker"], "TF_CONFIG"),
}


IN_A_FRESH_PROCESS = "truncated file"


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_refused_cleanly(case, idx_dir, tmp_path, command):
    damage, extra, message = CASES[case]
    work = tmp_path / "work"
    (work / "saved_models/decoder/1").mkdir(parents=True)  # what an earlier run left
    (work / "saved_models/decoder/1/saved_model.pb").write_bytes(b"earlier version")
    (work / "runs/default").mkdir(parents=True)
    (work / "runs/default/config.json").write_text("{}")
    before = _snapshot(work)
    if damage is not None:
        damage(idx_dir)
    args = ["--epochs", "1", "--batch-size", "32", "--data-dir", str(idx_dir), *extra]
    runner = run_script if case == IN_A_FRESH_PROCESS else command
    result = runner("train.py", *args, cwd=work, env={"TF_CONFIG": ""} if "TF_CONFIG" in case else None)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(work) == before


def test_batch_must_split_evenly_over_replicas(mirrored):
    strategy = mirrored
    distribute.check_global_batch(64, strategy)
    with pytest.raises(UserError, match="split evenly over 2 replicas. Received: batch_size=63") as error:
        distribute.check_global_batch(63, strategy)
    translated = TrainConfig.in_options(str(error.value))
    assert "Received: --batch-size 63; use a multiple of 2, e.g. --batch-size 64" in translated


@pytest.mark.parametrize(("message", "translated"), [
    ("Received: image_size=(64, 48).", "Received: --image-size 64 48."),
    ("use grayscale=True, or progress=False", "use --grayscale, or --no-progress"),
    ("a smaller `batch_size` or arch='mlp'", "a smaller --batch-size or --arch mlp"),
    ("train_split='test[:8000]' and image_dir=DIR", "--train-split 'test[:8000]' and --image-dir DIR"),
    ("Received: image_shape=(27, 27, 1) and k=3", "Received: image_shape=(27, 27, 1) and k=3"),  # no options
    # A model's classes are the data's under --conditional, and None without it.
    ("prior='class' with classes=None; pass `classes`",
     "--prior class with --no-conditional; pass --conditional"),
])
def test_the_commands_write_library_arguments_as_their_options(message, translated):
    assert TrainConfig.in_options(message) == translated
