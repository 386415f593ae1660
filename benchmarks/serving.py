"""Latency of the exported serving signatures, the way TensorFlow Serving runs them and the TF2 way.

    python benchmarks/serving.py                          # a fresh MNIST-sized mlp model (784-400-20)
    python benchmarks/serving.py --export-dir saved_models --seconds 5

Prints one machine-readable line per servable, signature and batch size, e.g.
    model=vae signature=interpolate batch=64 session_p50_ms=... session_p99_ms=... load_p50_ms=...
    load_p99_ms=... calls=...
`session` is the path TensorFlow Serving takes: a TF1 session over the SavedModel's MetaGraph, fed the
signature's input tensors and fetching its outputs (one Session::Run per request, as
servables/tensorflow/predict_util.cc does; no network, no JSON or protobuf). `load` calls the same
signature through `tf.saved_model.load(...).signatures`. For `sample` and `sample_png` the batch is
`n`; for `interpolate` it is the number of pairs, each decoded at `--steps` points; for `analogy` the
number of triples. Each case is timed for `--seconds` after `--warmup` calls; the two paths alternate
call by call, so a change of machine load hits both alike.
"""

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vae.serving import signatures as table  # noqa: E402 (after the path is set)

# (servable, signature): the decoder's generation, and the vae's encoding and composites.
CASES = (("decoder", table.DECODE), ("decoder", table.SAMPLE), ("decoder", table.SAMPLE_PNG),
         ("decoder", table.LOG_PRIOR), ("vae", table.ENCODE), ("vae", table.INTERPOLATE),
         ("vae", table.ANALOGY))


def call_loaded(signature, inputs):
    """Runs a `tf.saved_model.load` signature on numpy inputs; numpy outputs, as the session gives."""
    import tensorflow as tf

    outputs = signature(**{key: tf.constant(value) for key, value in inputs.items()})
    return [value.numpy() for value in outputs.values()]


class SessionSignature:
    """One signature of a SavedModel in a TF1 session: the MetaGraph TensorFlow Serving loads."""

    def __init__(self, path, name):
        import tensorflow as tf

        self.session = tf.compat.v1.Session(graph=tf.Graph())
        meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"], str(path))
        definition = meta_graph.signature_def[name]
        self.inputs = sorted(definition.inputs)
        tensor = self.session.graph.get_tensor_by_name
        self.run = self.session.make_callable(
            [tensor(info.name) for info in definition.outputs.values()],
            [tensor(definition.inputs[key].name) for key in self.inputs])

    def __call__(self, inputs):
        return self.run(*(inputs[key] for key in self.inputs))


def time_case(paths, inputs, seconds, warmup):
    """{path name: [seconds per call]}: the paths called in turn for `seconds` after `warmup` rounds."""
    for _ in range(warmup):
        for call in paths.values():
            call(inputs)
    times = {name: [] for name in paths}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < 10:
        for name, call in paths.items():
            start = time.perf_counter()
            call(inputs)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", help="export root to time (default: a fresh untrained mlp model)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per case and batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="points per pair of `interpolate`")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from keras_vae import ExportedVAE, publish
    from keras_vae.serving.functions import example_inputs

    tf.get_logger().setLevel("ERROR")  # tf.compat.v1.saved_model.load is deprecated, and is what we time
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.export_dir or scratch)
        if args.export_dir is None:
            from keras_vae.models import build_vae

            # Latency does not depend on the weights: an untrained model of the default size will do.
            publish(root, build_vae("mlp", (28, 28, 1), latent_dim=20, hidden_dim=400, seed=0),
                    {"config.json": '{"likelihood": "bernoulli"}'})
        rng = np.random.default_rng(0)
        sizes = ExportedVAE(root)
        for model, case in CASES:
            name, path = case.key(model), root / model / str(sizes.version)
            loaded = tf.saved_model.load(str(path))
            signature, session = loaded.signatures[name], SessionSignature(path, name)
            for batch in args.batch_size:
                inputs = example_inputs(case, batch, rng, sizes.latent_dim, sizes.image_shape, args.steps,
                                        None if sizes.classes is None else len(sizes.classes))
                paths = {"session": session, "load": functools.partial(call_loaded, signature)}
                times = time_case(paths, inputs, args.seconds, args.warmup)
                figures = {"model": model, "signature": name, "batch": batch}
                for path_name, values in times.items():
                    p50, p99 = np.percentile(np.asarray(values) * 1000, [50, 99])
                    figures.update({f"{path_name}_p50_ms": f"{p50:.3f}", f"{path_name}_p99_ms": f"{p99:.3f}"})
                figures["calls"] = len(times["session"])
                print(" ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
            session.session.close()


if __name__ == "__main__":
    main()
