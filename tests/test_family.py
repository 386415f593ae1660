"""The model family: the IWAE objective, the class prior and the VampPrior, against closed forms."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_images
from keras_vae.errors import UserError
from keras_vae.models import RANDOM_ALGORITHM, VAE, build_vae, load_vae
from keras_vae.models.priors import ClassPrior

SHAPE, LATENT, CLASSES = (8, 8, 1), 3, 4
VARIANTS = {
    "iwae": {"objective": "iwae", "iw_samples": 5},
    "vamp": {"prior": "vamp", "pseudo_inputs": 6},
    "conditional": {"classes": CLASSES},
}
IMAGES = synthetic_images(64, *SHAPE[:2]).astype("f4") / 255.0
LABELS = np.arange(64) % CLASSES


def tiny(seed=0, **options):
    keras.utils.set_random_seed(seed)
    return build_vae("mlp", SHAPE, latent_dim=LATENT, hidden_dim=16, seed=seed, **options)


def variant(model, **options):
    """A model with `model`'s weights (and sampling state) and other options."""
    other = VAE.from_config({**model.get_config(), **options})
    other.set_weights(model.get_weights())
    return other


@pytest.fixture(scope="module")
def trained():
    """A tiny default model trained for a few hundred steps, so its posteriors are far from the prior."""
    model = tiny(1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(IMAGES, epochs=25, batch_size=16, verbose=0)
    return model


def _log_standard_normal(z):
    return -0.5 * np.sum(z**2 + math.log(2 * math.pi), axis=-1)


def _log_normal(z, mean, log_var):
    return -0.5 * np.sum((z - mean) ** 2 / np.exp(log_var) + log_var + math.log(2 * math.pi), axis=-1)


def _bernoulli_log_likelihood(x, logits):
    x, logits = x.reshape(len(x), -1).astype(np.float64), logits.reshape(len(logits), -1).astype(np.float64)
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def test_the_default_model_is_the_one_of_earlier_versions():
    # Figures of the same build and losses at the commit before the family (4158448): the same
    # weights for the seed, the same losses, the same variables in the same order (the backups').
    keras.utils.set_random_seed(0)
    model = build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=16, seed=0)
    images = (np.arange(3 * 784).reshape(3, 28, 28, 1) % 7 / 6).astype("f4")
    total = sum(np.sum(w.astype(np.float64)) for w in model.get_weights())
    assert total == pytest.approx(-1.6326677203178406, rel=1e-9)
    loss, _, kl = (np.asarray(t) for t in model.per_example_losses(images))
    np.testing.assert_allclose(loss, [543.9490966796875, 544.4605712890625, 546.0186767578125], rtol=1e-7)
    np.testing.assert_allclose(kl, [0.3964907228946686, 0.3964907228946686, 0.39649078249931335], rtol=1e-6)
    assert float(np.sum(model.sample(2, seed=5))) == pytest.approx(786.1712646484375, rel=1e-7)
    layers = [v.path.split("/")[0].rstrip("_0123456789") + "/" + v.path.split("/")[-1]
              for v in model.variables]
    assert layers == ["vae/kl_weight", "dense/kernel", "dense/bias", "mean/kernel", "mean/bias",
                      "log_var/kernel", "log_var/bias", "dense/kernel", "dense/bias", "logits/kernel",
                      "logits/bias", "seed_generator/seed_generator_state"]
    assert (model.classes, model.prior, model.objective) == (None, "normal", "elbo")
    assert model.bound == "ELBO, KL in closed form"
    # A .keras file of an earlier version has none of the new options in its config.
    old = {k: v for k, v in model.get_config().items()
           if k not in ("classes", "objective", "iw_samples", "prior", "pseudo_inputs")}
    assert VAE.from_config(old).get_config() == model.get_config()


def test_one_importance_sample_is_the_monte_carlo_elbo_exactly(trained):
    iwae = variant(trained, objective="iwae", iw_samples=1)
    state = iwae.sampling.seed_generator.state.numpy()
    loss, reconstruction, kl = (np.asarray(t) for t in iwae.per_example_losses(IMAGES[:8]))
    np.testing.assert_array_equal(loss, reconstruction + kl)
    # The same noise, drawn again, through the densities written out here.
    iwae.sampling.seed_generator.state.assign(state)
    mean, log_var = (np.asarray(t) for t in iwae.encode(IMAGES[:8]))
    eps = np.asarray(iwae.sampling.noise(tf.constant(mean), 1))[0]
    z = mean + np.exp(0.5 * log_var) * eps
    log_px = _bernoulli_log_likelihood(IMAGES[:8], np.asarray(iwae.decode_logits(z.astype("f4"))))
    elbo = log_px + _log_standard_normal(z) - _log_normal(z, mean, log_var)
    np.testing.assert_allclose(loss, -elbo, rtol=1e-5)
    # The VampPrior's ELBO is this Monte Carlo ELBO too, with its own prior.
    vamp = tiny(2, prior="vamp", pseudo_inputs=5)
    one = variant(vamp, objective="iwae", iw_samples=1)
    np.testing.assert_array_equal(vamp.per_example_losses(IMAGES[:8])[0],
                                  one.per_example_losses(IMAGES[:8])[0])


def test_one_importance_sample_averages_to_the_closed_form_elbo(trained):
    repeats = 400
    images = np.repeat(IMAGES[:4], repeats, axis=0)
    iwae = variant(trained, objective="iwae", iw_samples=1)
    loss = np.asarray(iwae.per_example_losses(images)[0]).reshape(4, repeats)
    reconstruction, kl = (np.asarray(t).reshape(4, repeats) for t in trained.per_example_losses(images)[1:])
    closed_form = reconstruction + kl  # the KL is the same for every repeat of an image
    assert np.all(kl.mean(axis=1) > 0.3)  # trained: posteriors away from the prior
    standard_error = np.sqrt((loss.var(axis=1) + closed_form.var(axis=1)) / repeats)
    assert np.all(np.abs(loss.mean(axis=1) - closed_form.mean(axis=1)) < 4 * standard_error)


def test_the_importance_weighted_bound_tightens_with_k(trained):
    repeats = 100
    images = np.repeat(IMAGES[:8], repeats, axis=0)
    bounds, errors = {}, {}
    for k in (1, 8, 64):
        losses = np.asarray(variant(trained, objective="iwae", iw_samples=k).per_example_losses(images)[0])
        # The images differ; the draws of each are what is random.
        per_image = losses.reshape(8, repeats)
        bounds[k], errors[k] = per_image.mean(), np.sqrt(np.sum(per_image.var(axis=1) / repeats)) / 8
    # -IWAE_1 > -IWAE_8 > -IWAE_64 in expectation: each gap well beyond four standard errors.
    assert bounds[1] - bounds[8] > 4 * math.hypot(errors[1], errors[8])
    assert bounds[8] - bounds[64] > 4 * math.hypot(errors[8], errors[64])
    iwae = variant(trained, objective="iwae", iw_samples=8)
    assert iwae.bound == "IWAE bound, K=8 importance samples"
    loss, reconstruction, kl = (np.asarray(t) for t in iwae.per_example_losses(images))
    assert np.mean(loss) < np.mean(reconstruction + kl)  # the parts are the K samples' ELBO


def test_log_prior_of_the_normal_and_the_class_prior_are_the_closed_forms():
    z = np.random.default_rng(0).standard_normal((6, LATENT)).astype("f4")
    np.testing.assert_allclose(tiny().log_prior(z), _log_standard_normal(z), rtol=1e-6)
    model = tiny(classes=CLASSES)
    rng = np.random.default_rng(1)
    mean, log_var = rng.standard_normal((CLASSES, LATENT)), rng.normal(-1.0, 0.5, (CLASSES, LATENT))
    model.class_prior.assign_parameters(mean, log_var)
    labels = np.array([0, 3, 1, 1, 2, 0])
    np.testing.assert_allclose(model.log_prior(z, labels), _log_normal(z, mean[labels], log_var[labels]),
                               rtol=1e-5)
    np.testing.assert_allclose(model.log_prior(z, 2), _log_normal(z, mean[2], log_var[2]), rtol=1e-5)
    # KL(N(m0, S0) || N(m1, S1)) = (tr(S1^-1 S0) + (m1 - m0)' S1^-1 (m1 - m0) - d + log |S1| / |S0|) / 2.
    images = IMAGES[:6]
    q_mean, q_log_var = (np.asarray(t, np.float64) for t in model.encode(images, labels))
    s0, s1 = np.exp(q_log_var), np.exp(log_var[labels])
    expected = 0.5 * (np.sum(s0 / s1 + (mean[labels] - q_mean) ** 2 / s1, axis=1) - LATENT
                      + np.sum(np.log(s1), axis=1) - np.sum(np.log(s0), axis=1))
    loss, reconstruction, kl = (np.asarray(t) for t in model.per_example_losses(images, labels))
    np.testing.assert_allclose(kl, expected, rtol=1e-4)
    np.testing.assert_allclose(loss, reconstruction + kl, rtol=1e-6)
    # With correlations: the covariance L L^T, L = diag(exp(log_var / 2)) + the lower triangle of tril.
    tril = rng.normal(0.0, 0.7, (CLASSES, LATENT, LATENT))
    model.class_prior.assign_parameters(mean, log_var, tril)
    scale = np.tril(tril, -1) + np.stack([np.diag(np.exp(0.5 * v)) for v in log_var])
    covariance = (scale @ np.swapaxes(scale, 1, 2))[labels]
    precision, log_det = np.linalg.inv(covariance), np.linalg.slogdet(covariance)[1]
    offset = z - mean[labels]
    expected = -0.5 * (np.einsum("bi,bij,bj->b", offset, precision, offset) + log_det
                       + LATENT * math.log(2 * math.pi))
    np.testing.assert_allclose(model.log_prior(z, labels), expected, rtol=1e-5)
    offset = mean[labels] - q_mean
    expected = 0.5 * (np.einsum("bii,bi->b", precision, s0) - LATENT + log_det - np.sum(np.log(s0), axis=1)
                      + np.einsum("bi,bij,bj->b", offset, precision, offset))
    np.testing.assert_allclose(model.per_example_losses(images, labels)[2], expected, rtol=1e-4)


def test_the_class_prior_learns_ten_times_faster_than_the_networks():
    # Adam's first step moves every weight by the learning rate (lr * g / |g|, one image per class so
    # that each row of the prior's tables gets one gradient); the prior's parameters, stored divided
    # by STEP_SCALE, move by STEP_SCALE times that.
    model = tiny(classes=CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    kernel = model.decoder.get_layer("logits").kernel
    def parameters():
        return [np.asarray(t) for t in model.class_prior.parameters(np.arange(CLASSES))]

    old_kernel, old = kernel.numpy(), parameters()
    model.train_step((tf.constant(IMAGES[:CLASSES]), tf.constant(LABELS[:CLASSES])))
    new = parameters()
    np.testing.assert_allclose(np.abs(kernel.numpy() - old_kernel).max(), 1e-3, rtol=1e-3)
    lower = np.tril(np.ones((LATENT, LATENT), bool), -1)
    for moved in (new[0] - old[0], new[1] - old[1], (new[2] - old[2])[:, lower]):
        np.testing.assert_allclose(np.abs(moved), 1e-3 * ClassPrior.STEP_SCALE, rtol=1e-3)


def test_vamp_log_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    model = tiny(prior="vamp", pseudo_inputs=7)
    rng = np.random.default_rng(2)
    pictures = rng.random((7, *SHAPE))
    model.vamp_prior.assign_images(pictures)
    np.testing.assert_allclose(model.vamp_prior.pseudo_inputs(), 0.05 + 0.9 * pictures, rtol=1e-5)
    # Larger weights than at initialisation: narrow, distinct components test the mixture's precision.
    for layer in ("mean", "log_var"):
        kernel = model.encoder.get_layer(layer).kernel
        kernel.assign(kernel * 4.0)
    u = np.asarray(model.vamp_prior.pseudo_inputs())
    means, log_vars = (np.asarray(t, np.float64) for t in model.encode(u))
    assert np.ptp(log_vars) > 2.0
    z = (means[rng.integers(7, size=10)] + rng.normal(0, 0.5, (10, LATENT))).astype("f4")
    components = np.stack([_log_normal(z, means[m], log_vars[m]) for m in range(7)], axis=1)
    expected = np.logaddexp.reduce(components, axis=1) - math.log(7)
    np.testing.assert_allclose(model.log_prior(z), expected, rtol=1e-5, atol=1e-4)


def test_samples_are_seeded_draws_of_each_prior():
    model = tiny(classes=CLASSES)
    mean = np.random.default_rng(3).standard_normal((CLASSES, LATENT))
    model.class_prior.assign_parameters(mean, np.zeros((CLASSES, LATENT)))
    eps = tf.random.stateless_normal([5, LATENT], [9, 0], alg=RANDOM_ALGORITHM)
    labels = np.array([0, 1, 2, 3, 3])
    z = mean[labels] + eps  # log_var 0: unit standard deviations
    np.testing.assert_allclose(model.sample(5, seed=9, labels=labels), model.decode(z, labels), rtol=1e-5)
    np.testing.assert_array_equal(model.sample(5, seed=9, labels=3), model.sample(5, seed=9, labels=[3] * 5))
    cooler = mean[labels] + 0.5 * eps
    np.testing.assert_allclose(model.sample(5, seed=9, labels=labels, temperature=0.5),
                               model.decode(cooler, labels), rtol=1e-5)
    tril = np.random.default_rng(4).standard_normal((CLASSES, LATENT, LATENT))
    model.class_prior.assign_parameters(mean, np.zeros((CLASSES, LATENT)), tril)
    z = mean[labels] + np.einsum("bij,bj->bi", np.tril(tril, -1)[labels] + np.eye(LATENT), 0.5 * eps)
    np.testing.assert_allclose(model.sample(5, seed=9, labels=labels, temperature=0.5),
                               model.decode(z, labels), rtol=1e-5)
    graph = tf.function(lambda n, seed, labels: model.sample(n, seed, labels))
    np.testing.assert_allclose(graph(tf.constant(5), tf.constant(9, tf.int64), tf.constant(labels)),
                               model.sample(5, seed=9, labels=labels), rtol=1e-6)
    vamp = tiny(prior="vamp", pseudo_inputs=6)
    means, log_vars = (np.asarray(t) for t in vamp.encode(np.asarray(vamp.vamp_prior.pseudo_inputs())))
    chosen = tf.random.stateless_uniform([5], [9, 1], 0, 6, tf.int32, alg=RANDOM_ALGORITHM).numpy()
    z = means[chosen] + np.exp(0.5 * log_vars[chosen]) * eps
    np.testing.assert_allclose(vamp.sample(5, seed=9), vamp.decode(z), rtol=1e-5)
    assert not np.allclose(vamp.sample(5, seed=9), vamp.sample(5, seed=10))


def test_bad_labels_and_options_say_what_to_change():
    conditional, plain = tiny(classes=("cat", "dog")), tiny()
    with pytest.raises(ValueError, match=r"class-conditional: pass labels.*Received: labels=None"):
        conditional.encode(IMAGES[:2])
    with pytest.raises(ValueError, match=r"from 0 to 1 \(the model's 2 classes\); got values from 0 to 5"):
        conditional.decode(np.zeros((2, LATENT), "f4"), [0, 5])
    with pytest.raises(ValueError, match=r"shape \[\] or \[2\]\); got shape \(3,\)"):
        conditional.reconstruct(IMAGES[:2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"Received: temperature=0"):
        conditional.sample(2, seed=0, labels=1, temperature=0)
    with pytest.raises(ValueError, match="got float32 values"):
        conditional.sample(2, seed=0, labels=np.array([0.0, 1.0], "f4"))
    with pytest.raises(ValueError, match=r"built without `classes`\. Received: labels=\[1, 0\]"):
        plain.encode(IMAGES[:2], [1, 0])
    graph = tf.function(lambda labels: conditional.sample(2, 0, labels))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must be class indices from 0 to 1"):
        graph(tf.constant([1, 2]))
    with pytest.raises(ValueError, match=r"\(images, labels\) batches"):
        conditional.test_step(IMAGES[:2])
    with pytest.raises(ValueError, match=r"Received: labels=None"):
        conditional(IMAGES[:2])
    assert conditional(IMAGES[:2], np.array([1, 0])).shape == (2, *SHAPE)
    for options, message in [
        ({"classes": 3, "prior": "vamp"}, r"prior='vamp' is not supported for a class-conditional model"),
        ({"prior": "class"}, r"Received: prior='class' with classes=None"),
        ({"iw_samples": 5}, r"Received: iw_samples=5 with objective='elbo'; use objective='iwae'"),
        ({"objective": "iwae", "iw_samples": 0}, r"Received: iw_samples=0"),
        ({"objective": "vi"}, r"Received: objective='vi'"),
        ({"pseudo_inputs": 20}, r"Received: pseudo_inputs=20 with prior='normal'; use prior='vamp'"),
        ({"classes": ["a", "a"]}, r"each once\. Received: classes=\['a', 'a'\]"),
    ]:
        with pytest.raises(UserError, match=message):
            tiny(**options)


def test_samples_of_a_class_look_like_that_class():
    # Each class is one lit quadrant over a faint blob: a sample of class c must light quadrant c.
    keras.utils.set_random_seed(0)
    labels = np.arange(256) % CLASSES
    templates = np.zeros((CLASSES, *SHAPE), "f4")
    for c in range(CLASSES):
        templates[c, 4 * (c // 2):4 * (c // 2) + 4, 4 * (c % 2):4 * (c % 2) + 4] = 1.0
    images = 0.8 * templates[labels] + 0.2 * synthetic_images(256, *SHAPE[:2], seed=5).astype("f4") / 255.0
    model = tiny(classes=CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images, labels, epochs=20, batch_size=32, verbose=0)
    asked = np.repeat(np.arange(CLASSES), 25)
    samples = np.asarray(model.sample(len(asked), seed=0, labels=asked)).reshape(len(asked), -1)
    nearest = np.argmin(((samples[:, None] - templates.reshape(CLASSES, -1)[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == asked) >= 0.9


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_with_fit_and_survives_a_keras_file(name, tmp_path):
    model = tiny(**VARIANTS[name])
    labels = LABELS if model.classes else None
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(IMAGES, labels, epochs=2, batch_size=16, verbose=0).history
    assert history["loss"][1] < history["loss"][0]
    model.save(tmp_path / "model.keras")
    loaded = load_vae(tmp_path / "model.keras")
    assert (loaded.classes, loaded.prior, loaded.bound) == (model.classes, model.prior, model.bound)
    for saved, restored in zip(model.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())  # prior weights and noise state
    label, first = (None, None) if labels is None else (1, labels[:4])
    np.testing.assert_array_equal(loaded.sample(4, 3, label), model.sample(4, 3, label))
    np.testing.assert_array_equal(loaded.per_example_losses(IMAGES[:4], first),
                                  model.per_example_losses(IMAGES[:4], first))
