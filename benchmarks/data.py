"""Input pipeline benchmarks: streamed pictures vs memory, and memory that does not grow with the data.

    python benchmarks/data.py                # all four
    python benchmarks/data.py --only check   # one of: decode, check, train, rss

Prints one machine-readable line per case:
    decode format=jpeg size=64x64 images_per_s=...        the streamed pipeline alone (read, decode,
                                                           resize), over a folder of pictures
    check format=png pictures=100000 ... ratio=...        the check of every picture before training
                                                           (open_s: listing and opening the split),
                                                           against one epoch of the streamed pipeline
    train source=folder|idx images_per_s=... ratio=...    python train.py on the same 28x28 grey images
                                                           as PNG files (streamed) and as IDX files (in
                                                           memory), median epoch after the first
    rss images=600|6000 peak_rss_mb=...                   peak memory of python train.py on folders of
                                                           96x96 RGB pictures (1 epoch)
Every case makes its own synthetic pictures in a temporary folder and deletes them.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pictures(count, height, width, channels, seed=0):
    """Smooth random uint8 pictures (compressible, as photographs are, unlike white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, height // 8 + 1, width // 8 + 1, channels)).astype(np.float32)
    smooth = coarse.repeat(8, axis=1).repeat(8, axis=2)[:, :height, :width]
    noise = rng.normal(0, 8, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def write_folder(folder, images, suffix=".png", classes=1, first=0):
    """Writes the pictures, numbered from `first`, into `folder` or round-robin into `classes` subfolders."""
    import tensorflow as tf

    encode = tf.function(tf.io.encode_png if suffix == ".png" else tf.io.encode_jpeg)
    targets = [folder] if classes == 1 else [folder / f"class_{c}" for c in range(classes)]
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
    for offset, image in enumerate(images):
        index = first + offset
        (targets[index % classes] / f"{index:06d}{suffix}").write_bytes(encode(image).numpy())


def epoch_seconds(split, batch_size=128):
    """Seconds one epoch of the split's streamed training pipeline takes, after a warm-up."""
    iterator = iter(split.training_source(batch_size, seed=0).dataset())
    for _ in range(10):
        next(iterator)
    start = time.perf_counter()
    for _ in range(split.count // batch_size):
        next(iterator)
    return time.perf_counter() - start


def check_cost(count, size, channels, suffix, classes):
    """The check of every picture before training (`bad_pictures`), against one epoch of decoding."""
    from keras_vae import data

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for first in range(0, count, 10_000):  # in parts, to keep the pictures' memory small
            write_folder(folder, pictures(min(10_000, count - first), size, size, channels, seed=first),
                         suffix, classes, first)
        begin = time.perf_counter()
        split = data.open_split("train", image_dir=str(folder))
        opened = time.perf_counter() - begin
        begin = time.perf_counter()
        bad = split.bad_pictures()
        checked = time.perf_counter() - begin
        assert not bad, bad[:3]
        epoch = epoch_seconds(split)
    return {"format": suffix[1:], "pictures": count, "size": f"{size}x{size}", "classes": classes,
            "open_s": f"{opened:.2f}", "check_s": f"{checked:.2f}",
            "pictures_per_s": f"{count / checked:.0f}", "epoch_decode_s": f"{epoch:.2f}",
            "ratio": f"{checked / epoch:.2f}"}


def decode_rate(suffix, count=4000, batch_size=128):
    """Images per second of the streamed training pipeline alone, 64x64 RGB pictures."""
    from keras_vae import data

    with tempfile.TemporaryDirectory() as folder:
        write_folder(Path(folder), pictures(count, 64, 64, 3), suffix)
        split = data.open_split("train", image_dir=folder, image_size=(64, 64))
        return split.count // batch_size * batch_size / epoch_seconds(split, batch_size)


def train_py(args, cwd, name):
    """Runs train.py with its run and export folders named `name`; returns its history."""
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "--run-dir", name,
                             "--export-dir", f"{name}_sm", "--sample-every", "0", "--no-progress"],
                            capture_output=True, text=True, cwd=cwd)
    if result.returncode:
        raise SystemExit(f"train.py failed:\n{result.stderr[-3000:]}")
    return json.loads((Path(cwd) / name / "metrics.json").read_text())["history"]


def train_rates(count=10000, val=1000, batch_size=128, epochs=3):
    """Images per second of train.py (median epoch after the first) from a folder and from IDX files."""
    images = pictures(count + val, 28, 28, 1)
    common = ["--batch-size", str(batch_size), "--epochs", str(epochs)]
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_folder(folder / "pictures", images)
        for prefix, part in (("train", images[:count]), ("t10k", images[count:])):
            header = struct.pack(">IIII", 2051, len(part), 28, 28)
            (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + part.tobytes())
        cases = {"folder": ["--image-dir", "pictures", "--train-split", f"train[:{count}]",
                            "--val-split", f"train[{count}:]"],
                 "idx": ["--data-dir", ".", "--train-split", "train", "--val-split", "test"]}
        for name, args in cases.items():
            history = train_py([*args, *common], folder, name)
            seconds = statistics.median(record["epoch_seconds"] for record in history[1:])
            rates[name] = (count // batch_size) * batch_size / seconds
    return rates


def peak_rss_mb(count):
    """Peak resident memory of train.py on a folder of `count` 96x96 RGB pictures, in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        write_folder(Path(folder) / "pictures", pictures(count, 96, 96, 3))
        command = [sys.executable, str(REPO / "train.py"), "--image-dir", "pictures", "--epochs", "1",
                   "--batch-size", "64", "--hidden-dim", "64", "--run-dir", "run", "--export-dir", "sm",
                   "--sample-every", "0", "--no-progress"]
        # RUSAGE_CHILDREN of a fresh wrapper process: the peak of this one train.py only.
        wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                   "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        result = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True,
                                text=True, cwd=folder)
        return int(result.stdout.split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--only", choices=("decode", "check", "train", "rss"))
    only = parser.parse_args().only
    if only in (None, "decode"):
        for suffix in (".jpg", ".png"):
            print(f"decode format={suffix[1:]} size=64x64 images_per_s={decode_rate(suffix):.0f}", flush=True)
    if only in (None, "check"):
        for case in ((100_000, 28, 1, ".png", 10), (4000, 64, 3, ".jpg", 1)):
            print("check " + " ".join(f"{k}={v}" for k, v in check_cost(*case).items()), flush=True)
    if only in (None, "train"):
        rates = train_rates()
        for name, rate in rates.items():
            print(f"train source={name} images_per_s={rate:.0f} ratio={rate / rates['idx']:.2f}", flush=True)
    if only in (None, "rss"):
        for count in (600, 6000):
            print(f"rss images={count} peak_rss_mb={peak_rss_mb(count):.0f}", flush=True)


if __name__ == "__main__":
    main()
