"""The public Python API: names, VAE methods against the functional models, .keras files, bad input."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import models
from keras_vae.errors import UserError

LATENT = 4


@pytest.fixture(scope="module")
def vae():
    return keras_vae.build_vae("mlp", (28, 28, 1), latent_dim=LATENT, hidden_dim=16, seed=0)


def _images(count, seed=0):
    return np.random.default_rng(seed).random((count, 28, 28, 1)).astype("f4")


def test_public_names_resolve_to_their_modules():
    for name, module in keras_vae._EXPORTS.items():
        assert getattr(keras_vae, name) is getattr(importlib.import_module(module), name), name
    assert {"VAE", "Sampling", "build_vae", "publish", "load_vae", "evaluate_vae"} <= set(dir(keras_vae))
    with pytest.raises(AttributeError):
        keras_vae.no_such_name  # noqa: B018


def test_methods_equal_the_functional_models(vae):
    images = _images(5)
    mean, log_var = vae.encode(images)
    expected_mean, expected_log_var = vae.encoder(images)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(log_var, expected_log_var, rtol=1e-6)
    z = np.random.default_rng(1).standard_normal((3, LATENT)).astype("f4")
    np.testing.assert_allclose(vae.decode_logits(z), vae.decoder(z), rtol=1e-6)
    decoded = np.asarray(vae.decode(z))
    np.testing.assert_allclose(decoded, 1 / (1 + np.exp(-np.asarray(vae.decoder(z)))), rtol=1e-5)
    np.testing.assert_allclose(vae.reconstruct(images), vae.decode(expected_mean), rtol=1e-6)
    assert decoded.shape == (3, 28, 28, 1) and decoded.min() >= 0 and decoded.max() <= 1


def test_sample_is_the_decoding_of_seeded_standard_normal_latents(vae):
    latents = tf.random.stateless_normal([6, LATENT], [9, 0], alg=models.RANDOM_ALGORITHM)
    np.testing.assert_allclose(vae.sample(6, seed=9), vae.decode(latents), rtol=1e-6)
    assert not np.allclose(vae.sample(6, seed=9), vae.sample(6, seed=10))
    keras.utils.set_random_seed(3)
    first = np.asarray(vae.sample(2))
    keras.utils.set_random_seed(3)
    np.testing.assert_array_equal(first, vae.sample(2))  # unseeded draws follow the global seed


def test_call_returns_logits_through_a_random_posterior_sample(vae):
    images = _images(2)
    a, b = np.asarray(vae(images)), np.asarray(vae(images))
    assert a.shape == (2, 28, 28, 1) and not np.allclose(a, b)


@pytest.mark.parametrize(("method", "argument", "message"), [
    ("encode", np.zeros((2, 28, 28), "f4"), r"images must have shape \[batch, 28, 28, 1\]; got \(2, 28"),
    ("encode", np.full((2, 28, 28, 1), 255.0, "f4"), r"must lie in \[0, 1\]; got values from 255"),
    ("encode", np.zeros((2, 28, 28, 1), "u1"), "Divide uint8 pixels by 255"),
    ("reconstruct", np.zeros((1, 32, 32, 1), "f4"), r"\[batch, 28, 28, 1\]"),
    ("decode", np.zeros((2, LATENT + 1), "f4"), rf"z must have shape \[batch, {LATENT}\]"),
    ("sample", 0, "at least 1; got 0"),
    ("sample", -3, "at least 1"),
])
def test_bad_input_gets_a_clear_error(vae, method, argument, message):
    with pytest.raises(ValueError, match=message):
        getattr(vae, method)(argument)


def _compiled(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras_vae.build_vae("mlp", (28, 28, 1), latent_dim=LATENT, hidden_dim=16, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


def test_keras_file_round_trip_restores_methods_and_training(tmp_path):
    model = _compiled()
    images = _images(32)
    model.fit(images, epochs=1, batch_size=16, verbose=0)  # optimizer state and seed state move on
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_vae.VAE) and isinstance(loaded.sampling, keras_vae.Sampling)
    z = np.random.default_rng(2).standard_normal((4, LATENT)).astype("f4")
    np.testing.assert_array_equal(loaded.decode(z), model.decode(z))
    for got, want in zip(loaded.encode(images), model.encode(images), strict=True):
        np.testing.assert_array_equal(got, want)
    # One more training step on each: equal weights and losses need equal optimizer and noise state.
    logs = [m.train_on_batch(images[:16], return_dict=True) for m in (model, loaded)]
    assert logs[1] == pytest.approx(logs[0], rel=1e-6)
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 3


def test_load_vae_says_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(UserError, match="No model file at .*missing.keras"):
        keras_vae.load_vae(tmp_path / "missing.keras")
    model = _compiled()
    model.save(tmp_path / "good.keras")
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes((tmp_path / "good.keras").read_bytes()[:2000])
    with pytest.raises(UserError, match="damaged.keras is damaged"):
        keras_vae.load_vae(damaged)
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(UserError, match="not a keras_vae VAE"):
        keras_vae.load_vae(tmp_path / "other.keras")
    z = np.zeros((1, LATENT), "f4")
    np.testing.assert_array_equal(keras_vae.load_vae(tmp_path / "good.keras").decode(z), model.decode(z))
