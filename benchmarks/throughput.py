"""Training throughput of keras_vae on synthetic MNIST-sized data, against the machine's matmul peak.

    python benchmarks/throughput.py                       # mlp and conv, batch 128 and 1024
    python benchmarks/throughput.py --arch mlp --batch-size 1024 --epochs 5 --eval-k 0

Prints one machine-readable line per case, e.g.
    arch=mlp batch=1024 jit=on images_per_s=... s_per_epoch=... peak_rss_mb=... flops_per_image=...
    achieved_gflops=... data_images_per_s=... train_py_images_per_s=... train_py_ratio=... peak_fraction=...
then `eval=iwae_nll arch=... k=1000 images_per_s=...` for evaluate.py's importance-weighted NLL, and
first `matmul_peak_gflops=...`, the fp32 matrix-multiply rate measured in the same run. Each case
runs in a fresh process. `images_per_s` is the bare step: the compiled function train.py uses
(strategy.run of VAE.train_step over the same tf.data pipeline) called once per epoch, the median
over the epochs after a warm-up epoch. `train_py_images_per_s` is `python train.py` itself on the same
images (as IDX files), whole epochs with progress bar, validation on 1,000 images, backups and
callbacks, from its own per-epoch timings (`epoch_seconds` in metrics.json).
`data_images_per_s` is the input pipeline alone. FLOPs per image are counted from the layer shapes:
forward multiply-adds x 2, and backward twice the forward.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGES = 60000
IMAGE_SHAPE = (28, 28, 1)


def matmul_peak_gflops(size=2048, repeats=10):
    """The best fp32 matmul rate of this machine, in GFLOP/s (the best of `repeats` timings)."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_image(model):
    """Training FLOPs per image (forward and backward) from the layer shapes of encoder and decoder."""
    forward = 0
    for network in (model.encoder, model.decoder):
        for layer in network.layers:
            kind = type(layer).__name__
            if kind == "Dense":
                forward += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
            elif kind in ("Conv2D", "Conv2DTranspose"):
                kh, kw = layer.kernel_size
                # A convolution computes at each output position, a transposed one at each input one.
                spatial = layer.output.shape if kind == "Conv2D" else layer.input.shape
                channels_in = layer.input.shape[-1]
                forward += 2 * kh * kw * channels_in * layer.filters * spatial[1] * spatial[2]
    return 3 * forward


def synthetic_images(count, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, size=(count, *IMAGE_SHAPE), dtype=np.uint8)


def data_only_images_per_s(images, batch_size, steps=200):
    """How fast the training input pipeline alone delivers images."""
    from keras_vae import data

    iterator = iter(data.InMemoryImages(images, batch_size).dataset())
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch_size / (time.perf_counter() - start)


def _write_idx(folder, images):
    """Writes `images` as MNIST-style IDX files (train and t10k) for train.py --data-dir."""
    import struct

    for prefix, part in (("train", images), ("t10k", images[:1000])):
        header = struct.pack(">IIII", 2051, len(part), *IMAGE_SHAPE[:2])
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + part.tobytes())


def end_to_end_images_per_s(images, arch, batch_size, epochs, jit):
    """Images per second of `python train.py` itself (progress bar on), from its metrics.json."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        _write_idx(folder, images)
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "--data-dir", str(folder),
             "--val-split", "test", "--arch", arch, "--batch-size", str(batch_size), "--epochs", str(epochs),
             "--jit-compile", jit, "--export-dir", str(folder / "sm"), "--run-dir", str(folder / "run"),
             "--sample-every", "0"],
            check=True, capture_output=True, cwd=folder,
        )
        history = json.loads((folder / "run/metrics.json").read_text())["history"]
    seconds = statistics.median(record["epoch_seconds"] for record in history[1:] or history)
    return (len(images) // batch_size) * batch_size / seconds


def run_case(arch, batch_size, epochs, jit, steps_per_execution):
    """Times the bare training step and train.py on synthetic data; returns the figures as a dict."""

    from keras_vae import data
    from keras_vae.devices import resolve_jit_compile
    from keras_vae.models import build_vae
    from keras_vae.training import Trainer, distribute, make_optimizer

    images = synthetic_images(IMAGES)
    strategy = distribute.make_strategy("auto")
    jit_compile = resolve_jit_compile(jit)
    with strategy.scope():
        model = build_vae(arch, IMAGE_SHAPE, seed=0)
        model.compile(optimizer=make_optimizer("adam", 1e-3), jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)
    trainer = Trainer(model, strategy, steps_per_execution, progress=False)
    steps = IMAGES // batch_size
    iterator = trainer.iterator(data.InMemoryImages(images, batch_size))  # train.py's input path
    epoch_seconds = []
    for _ in range(epochs):  # the bare step: one call per epoch, nothing read back but the loss
        start = time.perf_counter()
        trainer.run_steps(iterator, steps)
        float(model.loss_tracker.result())
        epoch_seconds.append(time.perf_counter() - start)
    images_per_s = steps * batch_size / statistics.median(epoch_seconds[1:] or epoch_seconds)
    end_to_end = end_to_end_images_per_s(images, arch, batch_size, epochs, jit)
    flops = flops_per_image(model)
    return {
        "arch": arch, "batch": batch_size, "jit": "on" if jit_compile else "off",
        "images_per_s": round(images_per_s), "s_per_epoch": round(IMAGES / images_per_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "flops_per_image": flops, "achieved_gflops": round(flops * images_per_s / 1e9, 1),
        "data_images_per_s": round(data_only_images_per_s(images, batch_size)),
        "train_py_images_per_s": round(end_to_end), "train_py_ratio": round(end_to_end / images_per_s, 3),
    }


def run_evaluation_case(arch, k, images):
    """Times the importance-weighted NLL of evaluate.py (exported models, k samples) on `images`."""
    import json as json_text
    import tempfile

    from keras_vae import ExportedVAE, publish
    from keras_vae.evaluation import estimators, evaluate
    from keras_vae.models import build_vae

    model = build_vae(arch, IMAGE_SHAPE, seed=0)
    with tempfile.TemporaryDirectory() as root:
        publish(root, model, {"config.json": json_text.dumps({"likelihood": "bernoulli"})})
        exported = ExportedVAE(root)
        log_likelihood = estimators.decoder_log_likelihood("bernoulli", exported.decode_logits)
        estimate = estimators.importance_estimator(exported.encode, log_likelihood, k,
                                                   samples_per_call=estimators.samples_per_call())
        pixels = synthetic_images(images)
        evaluate.estimate_split(estimate, pixels[:100], 100)  # warm-up: tracing
        start = time.perf_counter()
        evaluate.estimate_split(estimate, pixels, 100)
        seconds = time.perf_counter() - start
    return {"eval": "iwae_nll", "arch": arch, "k": k, "images_per_s": round(images / seconds, 1),
            "decoder_rows_per_s": round(images * k / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _child(case):
    """Runs one case in a fresh process; returns its figures."""
    child = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                           text=True)
    if child.returncode != 0:
        print(f"{case} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
        sys.exit(1)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--arch", choices=("mlp", "conv"), action="append",
                        help="architecture(s) to time (default: both)")
    parser.add_argument("--batch-size", type=int, action="append", help="batch size(s) (default: 128, 1024)")
    parser.add_argument("--epochs", type=int,
                        help="epochs per case, the first a warm-up (default: 6 for mlp, whose epochs are "
                        "short, 3 for conv)")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--steps-per-execution", type=int, default=10)
    parser.add_argument("--eval-k", type=int, default=1000,
                        help="importance samples for the evaluation timing (0: skip it)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, in a child process
    args = parser.parse_args()
    if (args.epochs is not None and args.epochs < 1) or any(b < 1 for b in args.batch_size or []):
        parser.error("--epochs and --batch-size must be positive")
    if args.case:
        from keras_vae import devices

        devices.configure_devices()  # as train.py and evaluate.py do: cases can share a GPU
        case = json.loads(args.case)
        print(json.dumps(run_evaluation_case(**case) if "k" in case else run_case(**case)))
        return
    peak = matmul_peak_gflops()
    print(f"matmul_peak_gflops={peak:.1f}", flush=True)
    for arch in args.arch or ["mlp", "conv"]:
        for batch_size in args.batch_size or [128, 1024]:
            epochs = args.epochs or {"mlp": 6, "conv": 3}[arch]
            case = {"arch": arch, "batch_size": batch_size, "epochs": epochs, "jit": args.jit_compile,
                    "steps_per_execution": args.steps_per_execution}
            figures = _child(case)
            figures["peak_fraction"] = round(figures["achieved_gflops"] / peak, 3)
            print(" ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
        if args.eval_k:
            # Enough images for a stable rate in about half a minute of decoder work.
            case = {"arch": arch, "k": args.eval_k, "images": 2000 if arch == "mlp" else 200}
            print(" ".join(f"{key}={value}" for key, value in _child(case).items()), flush=True)


if __name__ == "__main__":
    main()
