import numpy as np

from keras_vae.models import losses


def test_kl_matches_closed_form():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    variance = np.exp(log_var)
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2 per dimension.
    expected = np.sum(-0.5 * log_var + 0.5 * (variance + mean**2) - 0.5, axis=-1)
    actual = np.asarray(losses.kl_divergence(mean.astype("f4"), log_var.astype("f4")))
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    assert np.asarray(losses.kl_divergence(np.zeros((2, 3)), np.zeros((2, 3)))).tolist() == [0, 0]


def test_bernoulli_nll_matches_cross_entropy():
    rng = np.random.default_rng(1)
    x, logits = rng.random((4, 3, 3, 1)), rng.normal(scale=3, size=(4, 3, 3, 1))
    p = 1 / (1 + np.exp(-logits))
    expected = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    actual = np.asarray(losses.bernoulli_nll(x.astype("f4"), logits.astype("f4")))
    np.testing.assert_allclose(actual, expected, rtol=1e-4)


def test_bernoulli_nll_is_finite_for_saturated_logits():
    x = np.array([[0.0, 1.0, 0.0, 1.0]], "f4")
    logits = np.array([[1e4, -1e4, -1e4, 1e4]], "f4")
    value = np.asarray(losses.bernoulli_nll(x, logits))
    np.testing.assert_allclose(value, [2e4], rtol=1e-6)  # two pixels wrong by 1e4 nats each


def test_gaussian_sse_is_squared_error_of_sigmoid_mean():
    rng = np.random.default_rng(2)
    x, logits = rng.random((3, 5)), rng.normal(size=(3, 5))
    expected = np.sum((x - 1 / (1 + np.exp(-logits))) ** 2, axis=-1)
    actual = np.asarray(losses.gaussian_sse(x.astype("f4"), logits.astype("f4")))
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
