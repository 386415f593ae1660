"""Exports of the model family (IWAE, VampPrior, class-conditional): signatures, labels, log_prior, the
strict fakes, sample.py --label and evaluate.py on a conditional export.

Each variant is published once for the session (conftest.py `variants`): tiny untrained models, the
class Gaussians set apart so that every class draws different images.
"""

import json
import math
import re
import shutil

import fake_rest
import fake_serving
import numpy as np
import pytest
import tensorflow as tf
from test_export import _run_as_the_server_does

from conftest import CLASSES, FAMILY, LATENT, SHAPE
from keras_vae import cli, serving
from keras_vae.config import SampleConfig
from keras_vae.images import encode_png, tile_images
from keras_vae.serving import functions
from keras_vae.serving import sample as sampling
from keras_vae.serving.exported import ExportedVAE
from keras_vae.serving.signatures import MODELS, of_model

VARIANTS = FAMILY
F = np.float32


@pytest.fixture(scope="module")
def conditional_served(conditional_server):
    """(REST URL and requests, gRPC target) of the strict fakes serving the conditional export."""
    with fake_rest.rest_server(conditional_server) as rest, \
            fake_serving.grpc_server(conditional_server) as (target, _):
        yield rest, target


def _expected(vae, signature, inputs):
    """What the Python model answers to a signature's inputs, {output name: array}."""
    if signature.name in ("sample", "sample_png"):
        labels = inputs.get("labels")
        rows = [vae.sample(inputs["n"], inputs["seed"]) if labels is None else
                vae.sample(inputs["n"], inputs["seed"], int(label)) for label in
                ([None] if labels is None else labels)]
        images = np.concatenate([np.asarray(row) for row in rows])
        if signature.name == "sample":
            return {"images": images}
        columns = None if labels is None else int(inputs["n"])
        return {"png_bytes": encode_png(tile_images(images, columns)).numpy()}
    if signature.name == "class_names":
        return {"names": np.array([vae.classes[i].encode() for i in inputs["labels"]], object),
                "classes": np.array([name.encode() for name in vae.classes], object)}
    method = {"logits": "decode_logits"}.get(signature.name, signature.name)
    answer = getattr(vae, method)(**inputs)
    return {name: np.asarray(value) for name, value in
            zip(signature.output_names(), tf.nest.flatten(answer), strict=True)}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_signature_of_every_variant_answers_as_the_python_model(variants, name):
    vae, root = variants[name]
    classes = None if vae.classes is None else len(vae.classes)
    rng = np.random.default_rng(5)
    for model in MODELS:
        loaded = tf.saved_model.load(str(root / model / "1")).signatures
        assert set(loaded) == set(of_model(model, classes is not None))
        for key, signature in of_model(model, classes is not None).items():
            inputs = functions.example_inputs(signature, 3, rng, LATENT, SHAPE, steps=4, classes=classes)
            tensors = {name: tf.constant(value) for name, value in inputs.items()}
            answer = {name: value.numpy() for name, value in loaded[key](**tensors).items()}
            expected = _expected(vae, signature, inputs)
            assert set(answer) == set(expected), (model, key)
            for output, value in expected.items():
                if output == "png_bytes":
                    assert answer[output] == value, (model, key)
                elif value.dtype == object:
                    assert answer[output].tolist() == value.tolist(), (model, key, output)
                else:
                    np.testing.assert_allclose(answer[output], value, atol=1e-5, err_msg=f"{model} {key}")
    exported = ExportedVAE(root)
    assert (exported.classes, exported.prior) == (vae.classes, vae.prior)
    metadata = json.loads((root / "decoder/1/model.json").read_text())
    assert (metadata["classes"], metadata["prior"], metadata["objective"]) == (
        None if vae.classes is None else list(vae.classes), vae.prior, vae.objective)


def test_sampled_classes_are_the_python_models_in_label_order_and_differ(variants):
    vae, root = variants["conditional"]
    exported = ExportedVAE(root)
    sample = tf.saved_model.load(str(root / "decoder/1")).signatures["sample"]
    grid = sample(n=tf.constant(4), seed=tf.constant(7, tf.int64), labels=tf.constant([7, 2]))["images"]
    alone = sample(n=tf.constant(4), seed=tf.constant(7, tf.int64), labels=tf.constant([2]))["images"]
    np.testing.assert_allclose(grid[:4], vae.sample(4, 7, 7), atol=1e-6)
    np.testing.assert_allclose(grid[4:], alone, atol=1e-6)  # a class's row does not depend on the others
    assert np.abs(grid[:4] - grid[4:]).max() > 1e-2
    per_image = [3, 0, 3, 9, 1]  # VAE.sample's labels, one per image
    np.testing.assert_allclose(exported.sample(5, 11, per_image), vae.sample(5, 11, per_image), atol=1e-6)
    np.testing.assert_allclose(exported.sample(5, 11, 4), vae.sample(5, 11, 4), atol=1e-6)
    vamp, vamp_root = variants["vamp"]
    np.testing.assert_allclose(ExportedVAE(vamp_root).sample(6, 2), vamp.sample(6, 2), atol=1e-6)


def test_log_prior_of_the_normal_export_is_the_closed_form(published, variants):
    z = np.random.default_rng(2).standard_normal((6, LATENT)).astype(F)
    closed_form = -0.5 * np.sum(z.astype(np.float64) ** 2 + math.log(2 * math.pi), axis=-1)
    for model in MODELS:
        log_prior = tf.saved_model.load(str(published / model / "1")).signatures["log_prior"]
        np.testing.assert_allclose(log_prior(z=tf.constant(z))["log_prior"], closed_form, rtol=1e-6)
    vae, root = variants["conditional"]
    labels = np.array([0, 3, 3, 9, 1, 2], np.int32)
    mean, log_var, _ = (np.asarray(t) for t in vae.class_prior.parameters(labels))
    class_form = -0.5 * np.sum((z - mean) ** 2 / np.exp(log_var) + log_var + math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(ExportedVAE(root).log_prior(z, labels), class_form, rtol=1e-5)


BAD_LABELS = {
    "a label beyond the classes": ("decoder", "serving_default", {"z": np.zeros((2, LATENT), F),
                                                                   "labels": np.array([0, 10], np.int32)},
                                   "labels must be class indices from 0 to 9 (the model\\'s 10 classes); got "
                                   "values from] [0] [to] [10]"),
    "a negative label to sample": ("decoder", "sample", {"n": np.int32(2), "seed": np.int64(0),
                                                         "labels": np.array([-1], np.int32)},
                                   "labels must be class indices from 0 to 9"),
    "one label for two latents": ("vae", "log_prior", {"z": np.zeros((2, LATENT), F),
                                                       "labels": np.array([1], np.int32)},
                                  "labels must be one class index, or one per example; got] [1] [labels for] "
                                  "[2] [examples"),
    "a scalar label": ("vae", "encode", {"images": np.zeros((1, *SHAPE), F), "labels": np.int32(1)},
                       "_labels_0_1 [] is not compatible with expected shape [?]"),  # TensorFlow's own
    "no classes asked": ("decoder", "sample_png", {"n": np.int32(2), "seed": np.int64(0),
                                                   "labels": np.zeros([0], np.int32)},
                         "labels must name 1 or more classes, and n times their number be at most 10000"),
    "too many images in all": ("vae", "sample", {"n": np.int32(5000), "seed": np.int64(0),
                                                 "labels": np.array([1, 2, 3], np.int32)},
                               "got n] [5000] [and labels] [3]"),
    "int64 labels": ("vae", "reconstruct", {"images": np.zeros((1, *SHAPE), F),
                                            "labels": np.array([1], np.int64)},
                     "to be int32 but int64 is provided"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_bad_labels_fail_inside_the_graph_with_a_clear_message(variants, case):
    model, signature, inputs, message = BAD_LABELS[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        _run_as_the_server_does(variants["conditional"][1] / model / "1", signature, inputs)


def test_labels_are_refused_by_an_unconditional_export_and_required_by_a_conditional_one(variants):
    z = np.zeros((2, LATENT), F)
    with pytest.raises(ValueError, match=r"built without `classes`\. Received: labels=\[1, 0\]"):
        ExportedVAE(variants["iwae"][1]).decode(z, [1, 0])
    with pytest.raises(ValueError, match=r"class-conditional: pass labels.*Received: labels=None"):
        ExportedVAE(variants["conditional"][1]).log_prior(z)


def test_served_images_of_a_class_are_the_python_models_over_rest_and_grpc(variants, conditional_served):
    vae, _ = variants["conditional"]
    (url, received), target = conditional_served
    expected = np.asarray(vae.sample(5, 3, 7))
    rest = serving.RestClient(url)
    served = rest.predict("decoder", {"n": 5, "seed": 3, "labels": [7]}, "sample")
    assert received[-1][2]["inputs"]["labels"] == [7]
    np.testing.assert_allclose(served, expected, atol=1e-6)
    with serving.GrpcClient(target) as client:
        by_grpc = client.predict("vae", {"n": 5, "seed": 3, "labels": [7]}, "sample")["images"]
        np.testing.assert_allclose(by_grpc, expected, atol=1e-6)
        z = np.random.default_rng(0).standard_normal((2, LATENT))
        refused = pytest.raises(serving.ServingError, client.predict, "decoder", {"z": z, "labels": [0, 11]})
        assert refused.value.status == "INVALID_ARGUMENT" and "from 0 to 9 (the model" in str(refused.value)
        names = client.predict("decoder", {"labels": [2]}, "class_names")
        assert names["names"].tolist() == [b"digit 2"] and len(names["classes"]) == 10
    # REST types each value by the signature: a fraction is not an int32.
    refused = pytest.raises(serving.ServingError, rest.predict, "vae",
                            {"z": np.zeros((1, LATENT)), "labels": [1.5]}, "log_prior")
    assert refused.value.status == 400
    assert "JSON Value: 1.5 Type: Number is not of expected type: int32" in str(refused.value)
    refused = pytest.raises(serving.ServingError, rest.predict, "vae",
                            {"z": np.zeros((1, LATENT)), "labels": [10]}, "log_prior")
    assert refused.value.status == 400 and "labels must be class indices from 0 to 9" in str(refused.value)
    assert rest.predict("vae", {"labels": [9, 0]}, "class_names")["names"].tolist() == ["digit 9", "digit 0"]


def test_sample_script_draws_a_class_or_one_row_per_class(variants, published, conditional_served, tmp_path,
                                                         capsys):
    vae, root = variants["conditional"]
    (url, _), _ = conditional_served
    local = SampleConfig(model_dir=str(root / "decoder"), n=3, seed=1, label="digit 7",
                         out=str(tmp_path / "a.png"))
    sampling.sample(local)
    expected = encode_png(tile_images(vae.sample(3, 1, 7), 3)).numpy()
    assert (tmp_path / "a.png").read_bytes() == expected
    assert cli.sample(["--server", url, "--n", "3", "--seed", "1", "--label", "7",
                       "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").read_bytes() == expected
    for where in (["--model-dir", str(root / "decoder")], ["--server", url]):
        assert cli.sample([*where, "--n", "2", "--label", "all", "--out", str(tmp_path / "all.png")]) == 0
        pixels = tf.io.decode_png((tmp_path / "all.png").read_bytes())
        assert pixels.shape == (10 * 30 + 2, 2 * 30 + 2, 1)  # one row per class
        capsys.readouterr()
        assert cli.sample([*where, "--label", "cat", "--out", str(tmp_path / "x.png")]) == 2
        error = capsys.readouterr().err
        assert "has no class 'cat'. Received: --label cat" in error and "9 'digit 9'" in error
    assert cli.sample(["--model-dir", str(published / "decoder"), "--label", "3",
                       "--out", str(tmp_path / "x.png")]) == 2
    assert "is not class-conditional" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_evaluate_reports_the_conditional_nll_with_the_splits_labels(variants, idx_dir, tmp_path, capsys):
    vae, root = variants["conditional"]
    out = tmp_path / "evaluation"
    status = cli.evaluate(["--export-dir", str(root), "--data-dir", str(idx_dir), "--k", "4",
                           "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((out / "evaluation.json").read_text())
    assert results["conditional"] and results["model"]["classes"] == list(CLASSES)
    assert "NLL -log p(x | y) (k=4)" in printed and "conditional on the labels" in printed
    samples = tf.io.decode_png((out / "samples.png").read_bytes())
    assert samples.shape == (10 * 30 + 2, 6 * 30 + 2, 1)  # one row per class, 64 // 10 columns
    # Without labels, nothing to condition on: exit status 2, naming what is missing.
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(idx_dir, unlabelled)
    for path in unlabelled.glob("*labels*"):
        path.unlink()
    status = cli.evaluate(["--export-dir", str(root), "--data-dir", str(unlabelled), "--k", "2",
                           "--out-dir", str(tmp_path / "none")])
    assert status == 2 and "needs the class of every image" in capsys.readouterr().err
