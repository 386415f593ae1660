import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.models import Sampling


def test_sampling_statistics_follow_mean_and_log_var():
    n = 20000
    mean = np.tile(np.array([[-2.0, 0.0, 3.0]], "f4"), (n, 1))
    log_var = np.tile(np.log(np.array([[0.25, 1.0, 4.0]], "f4")), (n, 1))
    z = np.asarray(Sampling(seed=3)([mean, log_var]))
    np.testing.assert_allclose(z.mean(axis=0), [-2.0, 0.0, 3.0], atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 1.0, 2.0], rtol=0.03)


def test_sampling_is_seeded_and_advances():
    inputs = [np.zeros((4, 2), "f4"), np.zeros((4, 2), "f4")]
    first, second = Sampling(seed=7), Sampling(seed=7)
    a, b = np.asarray(first(inputs)), np.asarray(second(inputs))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(np.asarray(first(inputs)), a)  # the state moves on between calls


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_sampling_computes_in_float32_under_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = Sampling(seed=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # float16 overflows at exp(11.1): log_var 30 gave inf before; float32 gives exp(15) = 3.3e6.
    mean, log_var = np.zeros((2, 3), "f4"), np.full((2, 3), 30.0, "f4")
    z = layer([mean, log_var])
    assert layer.compute_dtype == "float32" and z.dtype == "float32"
    assert np.isfinite(np.asarray(z)).all()
    np.testing.assert_allclose(np.abs(np.asarray(z)) / np.exp(15.0), np.abs(np.asarray(
        Sampling(seed=2)([mean, np.zeros_like(log_var)]))), rtol=1e-5)


def test_sampling_config_round_trip():
    layer = Sampling(seed=11, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert clone.seed == 11 and clone.name == "s"
    inputs = [np.ones((2, 3), "f4"), np.zeros((2, 3), "f4")]
    np.testing.assert_array_equal(np.asarray(layer(inputs)), np.asarray(clone(inputs)))


def test_replicas_draw_their_own_slice_of_the_global_noise(mirrored):
    strategy = mirrored
    with strategy.scope():
        mirrored = Sampling(seed=5)
    single = Sampling(seed=5)
    zeros = np.zeros((8, 3), "f4")
    expected = np.asarray(single([zeros, zeros]))

    @tf.function
    def draw(batch):
        return strategy.run(lambda b: mirrored([b, b]), args=(batch,))

    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(zeros))
    parts = strategy.experimental_local_results(draw(next(iter(dataset))))
    assert not np.allclose(parts[0], parts[1])  # a naive draw gives both replicas the same noise
    np.testing.assert_allclose(np.concatenate(parts), expected, rtol=1e-6)
    keras.backend.clear_session()
