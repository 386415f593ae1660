"""The likelihood estimators against closed forms, and evaluate.py on exported models."""

import json
import math
import shutil

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_images, write_idx
from keras_vae import publish
from keras_vae.config import EvaluateConfig
from keras_vae.errors import UserError
from keras_vae.evaluation import estimators, evaluate, figures
from keras_vae.models import Autoencoder, build_vae, losses
from keras_vae.serving import sample as sampling
from keras_vae.serving.exported import ExportedVAE
from keras_vae.serving.signatures import MODELS

# A linear-Gaussian model: z ~ N(0, I), x | z ~ N(W z + b, s^2 I), so p(x) = N(b, W W^T + s^2 I). W has
# orthogonal columns, which makes the exact posterior p(z | x) a Gaussian with diagonal covariance.
DIM, LATENT, NOISE = 6, 3, 0.5
_rng = np.random.default_rng(0)
W = np.linalg.qr(_rng.standard_normal((DIM, DIM)))[0][:, :LATENT] * [2.0, 1.0, 0.5]
B = _rng.standard_normal(DIM)
COVARIANCE = W @ W.T + NOISE**2 * np.eye(DIM)
POSTERIOR_VARIANCE = 1.0 / (1.0 + np.sum(W**2, axis=0) / NOISE**2)
X = _rng.multivariate_normal(B, COVARIANCE, size=400).astype(np.float32)


def true_log_px(x):
    centred = x - B
    mahalanobis = np.sum(centred * np.linalg.solve(COVARIANCE, centred.T).T, axis=1)
    return -0.5 * (mahalanobis + np.linalg.slogdet(2 * np.pi * COVARIANCE)[1])


def log_likelihood(images, z):
    mean = tf.matmul(z, W.T.astype(np.float32)) + B.astype(np.float32)
    return tf.reduce_sum(-0.5 * tf.square((images - mean) / NOISE) - math.log(NOISE * math.sqrt(2 * math.pi)),
                         axis=-1)


def encoder(shift=0.0, scale=1.0, log_var_offset=0.0):
    """The exact posterior for the defaults; otherwise a deliberately wrong one."""
    projection = (W / NOISE**2 * POSTERIOR_VARIANCE).astype(np.float32)

    def encode(images):
        mean = tf.matmul(images - B.astype(np.float32), projection) * scale + shift
        log_var = np.log(POSTERIOR_VARIANCE).astype(np.float32) + log_var_offset
        return mean, tf.broadcast_to(log_var, tf.shape(mean))

    return encode


def log_px_estimates(encode, k, samples_per_call=estimators.SAMPLES_PER_CALL, seed=0):
    outputs = estimators.importance_estimator(encode, log_likelihood, k, seed, samples_per_call)(X)
    return -outputs["nll"].numpy(), -(outputs["reconstruction"] + outputs["kl"]).numpy()


def test_the_estimate_is_exact_for_the_true_posterior_whatever_the_chunks():
    # Every importance weight then equals p(x); 4000 rows per call makes k=37 run in chunks 10+10+10+7.
    for k, samples_per_call in ((1, 4000), (37, 4000), (37, 100_000)):
        estimate, _ = log_px_estimates(encoder(), k, samples_per_call)
        np.testing.assert_allclose(estimate, true_log_px(X), atol=1e-4)


def test_the_estimate_lies_between_the_elbo_and_the_truth_and_tightens_with_k():
    truth = true_log_px(X).mean()
    gaps = {}
    for k in (1, 10, 100, 2000):
        estimate, elbo = log_px_estimates(encoder(shift=0.3, scale=0.7, log_var_offset=1.0), k)
        gaps[k] = truth - estimate.mean()
        assert truth - elbo.mean() > 2.0  # a wrong encoder: the ELBO is far from the truth
        if k > 1:
            assert elbo.mean() < estimate.mean() < truth + 0.01
    assert gaps[1] > gaps[10] > gaps[100] > gaps[2000] and gaps[2000] < 0.02 * gaps[1]
    same_seed = [log_px_estimates(encoder(shift=0.3), 10)[0] for _ in range(2)]
    np.testing.assert_array_equal(*same_seed)


def _log_standard_normal(z):
    return -0.5 * tf.reduce_sum(tf.square(z) + math.log(2 * math.pi), axis=-1)


def test_a_given_prior_density_and_labels_give_the_exact_conditional_likelihood():
    # The linear-Gaussian model with a class-conditional prior p(z | y) = N(m_y, I) and decoder mean
    # W z + b + c_y: p(x | y) = N(W m_y + b + c_y, W W^T + s^2 I), and the exact posterior is the
    # unconditional one's shifted by the class.
    rng = np.random.default_rng(1)
    m, c = (rng.standard_normal((3, size)).astype(np.float32) for size in (LATENT, DIM))
    labels = np.arange(len(X)) % 3
    shift = (m @ W.T + c).astype(np.float32)  # [classes, DIM]
    conditional_x = (X + shift[labels]).astype(np.float32)
    projection = (W / NOISE**2 * POSTERIOR_VARIANCE).astype(np.float32)

    def encode(images, labels):
        mean = tf.gather(m, labels) + tf.matmul(images - tf.gather(shift, labels) - B.astype(np.float32),
                                                projection)
        return mean, tf.broadcast_to(np.log(POSTERIOR_VARIANCE).astype(np.float32), tf.shape(mean))

    def conditional_likelihood(images, z, labels):
        return log_likelihood(images - tf.gather(c, labels), z)

    def log_prior(z, labels):
        return _log_standard_normal(z - tf.gather(m, labels))

    estimate = estimators.importance_estimator(encode, conditional_likelihood, 7, log_prior=log_prior)
    outputs = estimate(conditional_x, labels)
    np.testing.assert_allclose(-outputs["nll"].numpy(), true_log_px(X), atol=1e-4)
    assert np.mean(outputs["kl"]) > 0.5  # the Monte Carlo KL against the class prior
    # Given N(0, I) as a density, the estimate is the built-in one's.
    plain = [estimators.importance_estimator(encoder(shift=0.3), log_likelihood, 20, log_prior=prior)(X)
             for prior in (None, _log_standard_normal)]
    np.testing.assert_allclose(plain[1]["nll"], plain[0]["nll"], rtol=1e-5)


def test_evaluate_vae_uses_a_learned_prior():
    vae = build_vae("mlp", (8, 8, 1), latent_dim=2, hidden_dim=8, seed=0, prior="vamp", pseudo_inputs=3)
    # Every posterior, and so every component, is N((4, 4), e^-3 I) whatever the initial weights: the
    # VampPrior is q itself, far from N(0, I), whose KL from q is about 18 nats.
    for name, bias in (("mean", 4.0), ("log_var", -3.0)):
        layer = vae.encoder.get_layer(name)
        layer.kernel.assign(np.zeros(layer.kernel.shape))
        layer.bias.assign([bias, bias])
    images = (np.random.default_rng(0).random((10, 8, 8, 1)) * 255).astype(np.uint8)
    nll = evaluate.evaluate_vae(vae, images, k=10, batch_size=5)["nats_per_image"]["nll"]
    log_likelihood = estimators.decoder_log_likelihood("bernoulli", vae.decode_logits)
    by_prior = [float(np.mean(evaluate.estimate_split(
        estimators.importance_estimator(vae.encode, log_likelihood, 10, log_prior=prior), images, 5)["nll"]))
        for prior in (vae.log_prior, None)]
    assert nll == pytest.approx(by_prior[0], rel=1e-6) and by_prior[1] - nll > 10.0


def test_decoder_log_likelihood_is_the_bernoulli_and_the_variance_half_gaussian_density():
    rng = np.random.default_rng(1)
    x, logits = rng.random((3, 4, 4, 1)).astype("f4"), rng.normal(size=(3, 4, 4, 1)).astype("f4")
    bernoulli = estimators.decoder_log_likelihood("bernoulli", lambda z: z)(x, logits)
    np.testing.assert_allclose(bernoulli, -np.asarray(losses.bernoulli_nll(x, logits)), rtol=1e-6)
    gaussian = estimators.decoder_log_likelihood("gaussian", lambda z: z)(x, logits)
    mean = 1 / (1 + np.exp(-logits))
    density = -0.5 * np.log(2 * np.pi * 0.5) - (x - mean) ** 2 / (2 * 0.5)
    np.testing.assert_allclose(gaussian, density.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_active_units_and_bits_per_dim():
    rng = np.random.default_rng(2)
    # Posterior means whose variances over the data are about 1, 0.04, 0.0025 and 0.
    means = rng.standard_normal((5000, 4)) * [1.0, 0.2, 0.05, 0.0] + [3.0, -1.0, 2.0, 7.0]
    count, variances = estimators.active_units(means)
    assert count == 2
    np.testing.assert_allclose(variances, [1.0, 0.04, 0.0025, 0.0], rtol=0.1, atol=1e-12)
    assert estimators.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def _publish(root, latent_dim, likelihood="bernoulli", history=True):
    vae = build_vae("mlp", (28, 28, 1), latent_dim=latent_dim, hidden_dim=16, seed=0)
    files = {"config.json": json.dumps({"likelihood": likelihood})}
    if history:
        records = [{"epoch": e, **{f"{p}{m}": 100.0 / e for p in ("", "val_")
                                   for m in ("loss", "reconstruction_loss", "kl_loss")}} for e in (1, 2, 3)]
        files["metrics.json"] = json.dumps({"final": records[-1], "history": records})
    publish(root, vae, files)
    return root


def test_evaluate_script_end_to_end(idx_dir, tmp_path, command):
    _publish(tmp_path / "models", latent_dim=2)
    result = command("evaluate.py", "--export-dir", "models", "--data-dir", str(idx_dir),
                        "--split", "test[:40]", "--k", "20", "--batch-size", "16", "--out-dir", "out",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NLL, importance-weighted (k=20)" in result.stdout and "active units" in result.stdout
    results = json.loads((tmp_path / "out/evaluation.json").read_text())
    assert results["data"]["images"] == 40 and results["model"]["likelihood"] == "bernoulli"
    nats = results["nats_per_image"]
    assert nats["negative_elbo"] == pytest.approx(nats["reconstruction"] + nats["kl"])
    assert 0 < nats["nll"] < nats["negative_elbo"] + 1.0
    assert results["bits_per_dim"] == pytest.approx(nats["nll"] / (784 * math.log(2)))
    assert 0 <= results["active_units"] <= 2 and len(results["posterior_mean_variance"]) == 2
    sizes = {"samples.png": (242, 242), "reconstructions.png": (122, 242),
             "interpolations.png": (242, 362), "manifold.png": (602, 602),
             "latent_means.png": (600, 600), "training_curves.png": (400, 1200)}
    assert sorted(results["pictures"]) == sorted(sizes)
    for name, size in sizes.items():
        assert matplotlib.image.imread(tmp_path / "out" / name).shape[:2] == size, name
    # The samples are the exported `sample` signature's for the seed: what `sample.py --seed 0` draws.
    png, *_ = sampling.sample_local(tmp_path / "models/decoder", 64, seed=0)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(),
                                  tf.io.decode_png((tmp_path / "out/samples.png").read_bytes()).numpy())


def test_evaluate_binarized_gaussian_without_history(idx_dir, tmp_path):
    _publish(tmp_path, latent_dim=4, likelihood="gaussian", history=False)
    config = EvaluateConfig(export_dir=str(tmp_path), data_dir=str(idx_dir), split="test[:20]", k=5,
                            binarize="dynamic", out_dir=str(tmp_path / "out"))
    results = evaluate.run(config)
    assert results["pictures"] == ["samples.png", "reconstructions.png", "interpolations.png",
                                   "traversal.png", "latent_pca.png"]
    # 4 units swept over 11 steps; 600 x 600 pixels for the chart.
    assert matplotlib.image.imread(tmp_path / "out/traversal.png").shape[:2] == (122, 332)
    assert matplotlib.image.imread(tmp_path / "out/latent_pca.png").shape[:2] == (600, 600)
    shown = evaluate.first_images(np.full((3, 28, 28, 1), 128, np.uint8), 3, "dynamic")
    assert set(np.unique(shown)) == {0.0, 1.0}
    assert results["nats_per_image"]["nll"] < results["nats_per_image"]["negative_elbo"] + 1.0


def test_evaluate_user_errors(published, idx_dir, tmp_path):
    def run(**options):
        evaluate.run(EvaluateConfig(**{"export_dir": str(tmp_path), "data_dir": str(idx_dir),
                                       "split": "test[:8]", "k": 2, "pictures": False, **options}))

    with pytest.raises(UserError, match="No exported model.*`export_dir`") as error:
        run()
    assert "point --export-dir at the export root" in EvaluateConfig.in_options(str(error.value))
    with pytest.raises(UserError, match="does not name the likelihood"):
        run(export_dir=str(published))  # its config.json is {}
    with pytest.raises(UserError, match="No version 7"):
        run(export_dir=str(published), version=7)
    # A 28x28 model, copied with its likelihood named, on 12x12 images.
    named = shutil.copytree(published, tmp_path / "named")
    for model in MODELS:
        (named / model / "1/config.json").write_text('{"likelihood": "bernoulli"}')
    small = tmp_path / "small"
    small.mkdir()
    write_idx(small / "t10k-images-idx3-ubyte.gz", synthetic_images(8, 12, 12)[..., 0], 2051)
    with pytest.raises(UserError, match=r"shape \(12, 12, 1\).*takes \(28, 28, 1\)"):
        run(export_dir=str(named), data_dir=str(small))


def test_the_exported_and_the_keras_model_answer_alike_and_the_pictures_take_either(tmp_path):
    vae = build_vae("mlp", (28, 28, 1), latent_dim=3, hidden_dim=16, seed=0)
    publish(tmp_path / "models", vae, {"config.json": json.dumps({"likelihood": "bernoulli"})})
    exported = ExportedVAE(tmp_path / "models")
    assert exported.path == tmp_path / "models/vae/1"  # one SavedModel: encoder and decoder of one training
    rng = np.random.default_rng(0)
    images, z = rng.random((5, 28, 28, 1)).astype("f4"), rng.standard_normal((4, 3)).astype("f4")
    calls = {"encode": (images,), "decode": (z,), "decode_logits": (z,), "sample": (6, 11),
             "reconstruct": (images,), "interpolate": (images[:2], images[2:4], 4),
             "analogy": (images[:2], images[2:4], images[3:])}
    for name, arguments in calls.items():
        answers = [getattr(model, name)(*arguments) for model in (vae, exported)]
        for got, want in zip(tf.nest.flatten(answers[1]), tf.nest.flatten(answers[0]), strict=True):
            assert type(got) is type(want) and got.dtype == want.dtype == tf.float32, name
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
    assert isinstance(vae, Autoencoder) and isinstance(exported, Autoencoder)
    assert (exported.image_shape, exported.latent_dim) == (vae.image_shape, vae.latent_dim)
    means = np.asarray(vae.encode(images)[0])
    for model in (vae, exported):
        written = figures.write_pictures(tmp_path / type(model).__name__, model, images, means, seed=4)
        assert [path.name for path in written][:3] == ["samples.png", "reconstructions.png",
                                                       "interpolations.png"]
    for name in ("samples.png", "reconstructions.png", "interpolations.png", "traversal.png"):
        pixels = [tf.io.decode_png((tmp_path / folder / name).read_bytes()).numpy().astype(int)
                  for folder in ("VAE", "ExportedVAE")]
        assert np.abs(pixels[0] - pixels[1]).max() <= 1, name


def _export_of_an_older_keras_vae(root, vae, likelihood="bernoulli"):
    """An export root as keras_vae wrote it before the `vae` servable: decoder/1 and encoder/1.

    The encoder's SavedModel had two signatures, `serving_default` (mean and log_var) and `reconstruct`.
    """
    publish(root, vae, {"config.json": json.dumps({"likelihood": likelihood})})
    shutil.rmtree(root / "vae")
    image_spec = tf.TensorSpec([None, *vae.image_shape], tf.float32, name="images")
    module = tf.Module()
    module.variables_ = [v.value for part in (vae.encoder, vae.decoder) for v in part.variables]
    signatures = {
        "serving_default": tf.function(lambda images: dict(zip(("mean", "log_var"), vae.encode(images),
                                                               strict=True)), input_signature=[image_spec]),
        "reconstruct": tf.function(lambda images: {"images": vae.reconstruct(images)},
                                   input_signature=[image_spec]),
    }
    tf.saved_model.save(module, str(root / "encoder/1"), signatures=signatures)
    return root


def test_exports_of_an_older_keras_vae_still_evaluate(idx_dir, tmp_path):
    vae = build_vae("mlp", (28, 28, 1), latent_dim=2, hidden_dim=16, seed=0)
    root = _export_of_an_older_keras_vae(tmp_path / "models", vae)
    exported = ExportedVAE(root)
    assert (exported.version, exported.path) == (1, root / "decoder/1")
    images = np.random.default_rng(1).random((3, 28, 28, 1)).astype("f4")
    for got, want in zip(exported.encode(images), vae.encode(images), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(exported.reconstruct(images), vae.reconstruct(images), atol=1e-6)
    with pytest.raises(UserError, match="exported before the `interpolate` signature existed"):
        exported.interpolate(images, images, 3)
    config = EvaluateConfig(export_dir=str(root), data_dir=str(idx_dir), split="test[:16]", k=3,
                            out_dir=str(tmp_path / "out"))
    results = evaluate.run(config)
    assert results["model"]["version"] == 1 and 0 < results["nats_per_image"]["nll"]
    assert "interpolations.png" in results["pictures"]
    # A newer version beside it is read from the vae servable, the older one still from both halves.
    publish(root, vae, {"config.json": json.dumps({"likelihood": "bernoulli"})})
    assert ExportedVAE(root).path == root / "vae/2" and ExportedVAE(root, 1).path == root / "decoder/1"
    with pytest.raises(UserError, match=r"No version 3 .*present: \[1, 2\]"):
        ExportedVAE(root, 3)
