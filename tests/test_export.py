import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_vae import models, publish
from keras_vae.images import encode_png, image_grid, tile_images
from keras_vae.models import build_vae
from keras_vae.serving import exported, functions
from keras_vae.serving.signatures import MODELS, of_model

# Runs in a fresh interpreter where this project cannot be imported, even where it is installed (as in
# CI's virtual environment): loading the exports must need TensorFlow alone.
LOAD_AND_RUN = textwrap.dedent("""
    import json, sys
    sys.modules["keras_vae"] = None  # any import of keras_vae now raises ImportError
    import numpy as np, tensorflow as tf
    decoder = tf.saved_model.load(sys.argv[1] + "/decoder/1").signatures["serving_default"]
    encoder = tf.saved_model.load(sys.argv[1] + "/vae/1").signatures["encode"]
    z = np.load(sys.argv[2])
    x = np.load(sys.argv[3])
    out = {f"images_{n}": decoder(z=tf.constant(z[:n]))["images"].numpy() for n in (1, 7)}
    out.update({k: v.numpy() for k, v in encoder(images=tf.constant(x)).items()})
    # A class-conditional export: n images of classes 7 and 2, and log p(z | y).
    conditional = {m: tf.saved_model.load(sys.argv[5] + f"/{m}/1").signatures for m in ("decoder", "vae")}
    out["sampled"] = conditional["decoder"]["sample"](n=tf.constant(3), seed=tf.constant(4, tf.int64),
                                                      labels=tf.constant([7, 2]))["images"].numpy()
    labels = tf.constant([0, 1, 2, 3, 4, 5, 9])
    log_prior = conditional["vae"]["log_prior"](z=tf.constant(z[:, :4]), labels=labels)
    out["log_prior"] = log_prior["log_prior"].numpy()
    np.savez(sys.argv[4], **out)
""")


@pytest.fixture
def vae():
    return build_vae("mlp", (28, 28, 1), latent_dim=6, hidden_dim=32, seed=0)


def test_round_trip_in_a_process_without_the_project(vae, variants, tmp_path):
    version = publish(tmp_path / "models", vae, {"config.json": "{}"})
    assert version == 1
    rng = np.random.default_rng(1)
    z, x = rng.standard_normal((7, 6)).astype("f4"), rng.random((5, 28, 28, 1)).astype("f4")
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(LOAD_AND_RUN)
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(tmp_path / "models"), str(tmp_path / "z.npy"),
         str(tmp_path / "x.npy"), str(tmp_path / "out.npz"), str(variants["conditional"][1])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    expected = 1 / (1 + np.exp(-np.asarray(vae.decoder(z))))
    assert out["images_1"].shape == (1, 28, 28, 1) and out["images_7"].shape == (7, 28, 28, 1)
    np.testing.assert_allclose(out["images_1"], expected[:1], atol=1e-6)
    np.testing.assert_allclose(out["images_7"], expected, atol=1e-6)
    mean, log_var = vae.encoder(x)
    np.testing.assert_allclose(out["mean"], np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(out["log_var"], np.asarray(log_var), atol=1e-5)
    assert json.loads((tmp_path / "models/decoder/1/config.json").read_text()) == {}
    conditional = variants["conditional"][0]
    np.testing.assert_allclose(out["sampled"], np.concatenate([conditional.sample(3, 4, 7),
                                                               conditional.sample(3, 4, 2)]), atol=1e-6)
    np.testing.assert_allclose(out["log_prior"], conditional.log_prior(z[:, :4], [0, 1, 2, 3, 4, 5, 9]),
                               rtol=1e-5)


# The `main` the `saved_model_cli` script calls, once per command line, in one fresh process (each
# would spend most of its time importing TensorFlow): prints [[stdout, exit status], ...] as JSON.
SAVED_MODEL_CLI = textwrap.dedent("""
    import contextlib, io, json, sys
    from tensorflow.python.tools import saved_model_cli
    answers = []
    for argv in json.loads(sys.argv[1]):
        sys.argv = ["saved_model_cli", *argv]
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                status = saved_model_cli.main()
            except SystemExit as exit_status:
                status = exit_status.code
        answers.append([out.getvalue(), status or 0])
    print(json.dumps(answers))
""")


def _saved_model_cli(commands):
    """{name: (stdout, exit status)} of `saved_model_cli` run with each of `commands` {name: argv};
    and the process's stderr."""
    result = subprocess.run([sys.executable, "-c", SAVED_MODEL_CLI, json.dumps(list(commands.values()))],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.splitlines()[-1])
    return {name: tuple(answer) for name, answer in zip(commands, answers, strict=True)}, result.stderr


def _signature(shown, name):
    """The text of one signature in `saved_model_cli show --all` output."""
    return shown.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]


def _tensors(signature, kind):
    """{key: (dtype, shape)} of the inputs or outputs listed in a signature's text."""
    found = re.findall(kind + r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)", signature)
    return {key: (dtype, shape.strip()) for key, dtype, shape in found}


def test_saved_model_cli_shows_and_runs_the_signatures(published, tiny_vae, tmp_path):
    decoder, vae = str(published / "decoder/1"), str(published / "vae/1")
    done, stderr = _saved_model_cli({
        "show decoder": ["show", "--all", "--dir", decoder],
        "show vae": ["show", "--all", "--dir", vae],
        "sample": ["run", "--dir", decoder, "--tag_set", "serve", "--signature_def", "sample",
                   "--input_exprs", "n=3;seed=7", "--outdir", str(tmp_path)],
    })

    shown = {model: done[f"show {model}"][0] for model in ("decoder", "vae")}
    assert "MetaGraphDef with tag-set: 'serve'" in shown["decoder"]
    images, latent = ("DT_FLOAT", "(-1, 28, 28, 1)"), ("DT_FLOAT", "(-1, 4)")
    n_seed, codes = {"n": ("DT_INT32", "()"), "seed": ("DT_INT64", "()")}, {"mean": latent, "log_var": latent}
    pairs = {"images_a": images, "images_b": images}
    expected = {}  # (model, signature): (inputs, outputs)
    for model in ("decoder", "vae"):  # the decoder's four, unchanged, and the same in the vae
        expected.update({
            (model, {"decoder": "serving_default"}.get(model, "decode")): ({"z": latent}, {"images": images}),
            (model, "logits"): ({"z": latent}, {"logits": images}),
            (model, "sample"): (n_seed, {"images": images}),
            (model, "sample_png"): (n_seed, {"png_bytes": ("DT_STRING", "()")}),
            (model, "log_prior"): ({"z": latent}, {"log_prior": ("DT_FLOAT", "(-1)")}),
        })
    expected.update({
        ("vae", "serving_default"): ({"images": images}, codes),
        ("vae", "encode"): ({"images": images}, codes),
        ("vae", "reconstruct"): ({"images": images}, {"images": images}),
        ("vae", "interpolate"): ({**pairs, "steps": ("DT_INT32", "()")},
                                 {"images": ("DT_FLOAT", "(-1, -1, 28, 28, 1)")}),
        ("vae", "analogy"): ({**pairs, "images_c": images}, {"images": images}),
    })
    for model in shown:
        names = set(re.findall(r"signature_def\['(\w+)'\]", shown[model])) - {"__saved_model_init_op"}
        assert names == {name for m, name in expected if m == model}
    for (model, name), (inputs, outputs) in expected.items():
        signature = _signature(shown[model], name)
        assert _tensors(signature, "inputs") == inputs, (model, name)
        assert _tensors(signature, "outputs") == outputs, (model, name)
        assert "Method name is: tensorflow/serving/predict" in signature

    assert done["sample"][1] == 0, stderr[-2000:]
    sampled = np.load(tmp_path / "images.npy")
    z = tf.random.stateless_normal([3, 4], [7, 0], alg=models.RANDOM_ALGORITHM)
    np.testing.assert_allclose(sampled, tf.sigmoid(tiny_vae.decoder(z)).numpy(), atol=1e-6)


F = np.float32
BAD_REQUESTS = {
    "latent too long": ("decoder", "serving_default", {"z": np.zeros((2, 5), F)},
                        "z must have shape [batch, 4]; got shape] [2 5]"),
    "latent of rank 3": ("decoder", "logits", {"z": np.zeros((2, 4, 1), F)},
                         "[2,4,1] is not compatible with expected shape [?,4]"),
    "NaN latent": ("decoder", "serving_default", {"z": np.array([[0, np.nan, 0, 0]], F)},
                   "z must not contain NaN or infinite values : Tensor had NaN values"),
    "infinite latent": ("decoder", "logits", {"z": np.array([[0, 0, -np.inf, 0]], F)},
                        "z must not contain NaN or infinite values : Tensor had Inf values"),
    "no samples": ("decoder", "sample", {"n": np.int32(0), "seed": np.int64(1)},
                   "n must be between 1 and 10000; got] [0]"),
    "a vector of n": ("decoder", "sample", {"n": np.array([2], np.int32), "seed": np.int64(1)},
                      "n must have shape []; got shape] [1]"),
    "a matrix of seeds": ("decoder", "sample_png", {"n": np.int32(2), "seed": np.ones((2, 3), np.int64)},
                          "seed must have shape []; got shape] [2 3]"),
    "too many samples": ("decoder", "sample_png", {"n": np.int32(10_001), "seed": np.int64(1)},
                         "n must be between 1 and 10000; got] [10001]"),
    "flat images": ("vae", "serving_default", {"images": np.zeros((2, 784), F)},
                    "images must have shape [batch, 28, 28, 1]; got shape] [2 784]"),
    "small images": ("vae", "reconstruct", {"images": np.zeros((1, 27, 28, 1), F)},
                     "images must have shape [batch, 28, 28, 1]; got shape] [1 27 28 1]"),
    "negative pixels": ("vae", "encode", {"images": np.full((1, 28, 28, 1), -0.5, F)},
                        "images must lie in [0, 1]; got values from] [-0.5] [to] [-0.5]"),
    "NaN pixels": ("vae", "reconstruct", {"images": np.full((1, 28, 28, 1), np.nan, F)},
                   "images must not contain NaN or infinite values : Tensor had NaN values"),
    "a latent for the vae's decode": ("vae", "decode", {"z": np.zeros((2, 3), F)},
                                      "z must have shape [batch, 4]; got shape] [2 3]"),
    "one step": ("vae", "interpolate", {"images_a": np.zeros((2, 28, 28, 1), F),
                                        "images_b": np.ones((2, 28, 28, 1), F), "steps": np.int32(1)},
                 "steps must be between 2 and 1000; got] [1]"),
    "pairs of unequal batches": ("vae", "interpolate", {"images_a": np.zeros((2, 28, 28, 1), F),
                                                        "images_b": np.ones((1, 28, 28, 1), F),
                                                        "steps": np.int32(3)},
                                 "images_a, images_b must have the same batch size; got] [2] [1]"),
    "a vector of steps": ("vae", "interpolate", {"images_a": np.zeros((1, 28, 28, 1), F),
                                                 "images_b": np.ones((1, 28, 28, 1), F),
                                                 "steps": np.array([3], np.int32)},
                          "steps must have shape []; got shape] [1]"),
    "an analogy of unequal batches": ("vae", "analogy", {
        "images_a": np.zeros((2, 28, 28, 1), F), "images_b": np.zeros((2, 28, 28, 1), F),
        "images_c": np.zeros((3, 28, 28, 1), F)},
        "images_a, images_b, images_c must have the same batch size; got] [2] [2] [3]"),
    "bright pixels in an analogy": ("vae", "analogy", {
        "images_a": np.zeros((1, 28, 28, 1), F), "images_b": np.full((1, 28, 28, 1), 2.0, F),
        "images_c": np.zeros((1, 28, 28, 1), F)},
        "images_b must lie in [0, 1]; got values from] [2] [to] [2]"),
}


def _run_as_the_server_does(path, signature, inputs):
    """Runs a signature as TensorFlow Serving does: a C++ session run, no Python-side shape checks."""
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], str(path))
        definition = meta_graph.signature_def[signature]
        tensor = session.graph.get_tensor_by_name
        feeds = {tensor(definition.inputs[k].name)._as_tf_output(): v for k, v in inputs.items()}
        fetches = [tensor(info.name)._as_tf_output() for info in definition.outputs.values()]
        return session._call_tf_sessionrun(None, feeds, fetches, [], None)


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_fail_inside_the_graph_with_a_clear_message(published, case):
    model, signature, inputs, message = BAD_REQUESTS[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        _run_as_the_server_does(published / model / "1", signature, inputs)
    # The same path accepts a good request: what failed was the request, not the way of running it.
    good = functions.example_inputs(of_model(model)[signature], 2, np.random.default_rng(0), 4, (28, 28, 1))
    answer = _run_as_the_server_does(published / model / "1", signature, good)[0]
    assert answer.startswith(b"\x89PNG") if signature == "sample_png" else answer.shape[0] == 2


def test_sample_is_deterministic_and_reconstruct_decodes_the_mean(published, tiny_vae):
    decoder = tf.saved_model.load(str(published / "decoder/1")).signatures
    vae = tf.saved_model.load(str(published / "vae/1")).signatures

    def sample(n, seed):
        return decoder["sample"](n=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64))["images"]

    first, again, other = sample(5, 11).numpy(), sample(5, 11).numpy(), sample(5, 12).numpy()
    assert first.shape == (5, 28, 28, 1) and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    images = tf.constant(np.random.default_rng(3).random((2, 28, 28, 1)), tf.float32)
    mean, _ = tiny_vae.encoder(images)
    np.testing.assert_allclose(vae["reconstruct"](images=images)["images"].numpy(),
                               tf.sigmoid(tiny_vae.decoder(mean)).numpy(), atol=1e-6)


def test_warmup_requests_match_the_signatures(published):
    for model, names in (("decoder", ["serving_default", "logits", "sample", "sample_png", "log_prior"]),
                         ("vae", ["serving_default", "decode", "logits", "sample", "sample_png", "encode",
                                  "reconstruct", "interpolate", "analogy", "log_prior"])):
        path = published / model / "1"
        assert (path / "assets.extra/tf_serving_warmup_requests").is_file()
        requests = exported.read_warmup(path)
        assert [r.model_spec.signature_name for r in requests] == names
        loaded = tf.saved_model.load(str(path)).signatures
        for request in requests:
            assert request.model_spec.name == model
            specs = loaded[request.model_spec.signature_name].structured_input_signature[1]
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            assert {key: value.dtype for key, value in inputs.items()} == {
                key: spec.dtype.as_numpy_dtype for key, spec in specs.items()}
            outputs = loaded[request.model_spec.signature_name](
                **{key: tf.constant(value) for key, value in inputs.items()})
            for value in outputs.values():
                assert value.dtype == tf.string or np.isfinite(value.numpy()).all()


@pytest.mark.parametrize("n, rows, columns", [(1, 1, 1), (10, 3, 4), (16, 4, 4)])
def test_sample_png_is_the_grid_of_sample(published, n, rows, columns):
    decoder = tf.saved_model.load(str(published / "decoder/1")).signatures
    inputs = {"n": tf.constant(n, tf.int32), "seed": tf.constant(5, tf.int64)}
    png = decoder["sample_png"](**inputs)["png_bytes"].numpy()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = tf.io.decode_png(png).numpy()
    assert pixels.shape == (rows * 30 + 2, columns * 30 + 2, 1) and pixels.dtype == np.uint8
    grid = image_grid(decoder["sample"](**inputs)["images"].numpy())
    # The same picture up to the 8-bit rounding, white in the gaps and the empty cells.
    np.testing.assert_allclose(pixels / 255.0, grid, atol=0.5 / 255 + 1e-6)
    assert (pixels[:2] == 255).all() and (pixels[:, -2:] == 255).all()


# The VAE method each signature runs, where its name differs (`sample_png` is below).
METHODS = {"logits": "decode_logits"}


def test_every_signature_answers_as_the_python_model(published, tiny_vae):
    """Composites too: `interpolate` and `analogy` of the vae are the model's methods, in one graph."""
    rng = np.random.default_rng(4)
    for model in MODELS:
        loaded = tf.saved_model.load(str(published / model / "1")).signatures
        assert set(loaded) == set(of_model(model))
        for key, signature in of_model(model).items():
            inputs = functions.example_inputs(signature, 3, rng, tiny_vae.latent_dim, tiny_vae.image_shape,
                                              steps=5)
            answer = {name: value.numpy() for name, value in loaded[key](
                **{name: tf.constant(value) for name, value in inputs.items()}).items()}
            if signature.name == "sample_png":
                expected = encode_png(tile_images(tiny_vae.sample(**inputs))).numpy()
                assert answer == {"png_bytes": expected}, (model, key)
                continue
            expected = getattr(tiny_vae, METHODS.get(signature.name, signature.name))(**inputs)
            expected = dict(zip(signature.output_names(), tf.nest.flatten(expected), strict=True))
            assert {name: value.shape for name, value in answer.items()} == {
                name: tuple(value.shape) for name, value in expected.items()}, (model, key)
            for name, value in expected.items():
                np.testing.assert_allclose(answer[name], value, atol=1e-6, err_msg=f"{model} {key} {name}")
    # And the methods do what they say: the ends and the middle of the line between the means.
    pair = rng.random((2, 3, 28, 28, 1)).astype(F)
    interpolated = tiny_vae.interpolate(*pair, 5)
    means = [tiny_vae.encode(images)[0] for images in pair]
    np.testing.assert_allclose(interpolated[:, 0], tiny_vae.decode(means[0]), atol=1e-6)
    np.testing.assert_allclose(interpolated[:, -1], tiny_vae.decode(means[1]), atol=1e-6)
    np.testing.assert_allclose(interpolated[:, 2], tiny_vae.decode((means[0] + means[1]) / 2), atol=1e-6)
    # a : b :: a : ?  is b, and  a : a :: c : ?  is c.
    for triple in ((pair[0], pair[1], pair[0]), (pair[0], pair[0], pair[1])):
        np.testing.assert_allclose(tiny_vae.analogy(*triple), tiny_vae.decode(means[1]), atol=1e-6)
