import numpy as np
import pytest
import tensorflow as tf

from keras_vae.data import binarize

GREY = np.linspace(0.0, 1.0, 6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8, 1)
INDICES = np.arange(6)


def test_none_keeps_the_grey_levels():
    assert binarize(GREY, INDICES, "none") is GREY


def test_static_draws_depend_only_on_the_image_index():
    first = binarize(GREY, INDICES, "static", seed=1, draw=2).numpy()
    assert set(np.unique(first)) == {0.0, 1.0}
    # Another seed, draw, order and batch: the same binary images.
    again = binarize(GREY[::-1], INDICES[::-1], "static", seed=5, draw=9).numpy()[::-1]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[2:4], binarize(GREY[2:4], INDICES[2:4], "static").numpy())


def test_dynamic_draws_are_fresh_per_draw_and_repeat_per_seed():
    epochs = [binarize(GREY, INDICES, "dynamic", seed=3, draw=epoch).numpy() for epoch in (0, 1)]
    assert not np.array_equal(*epochs)
    np.testing.assert_array_equal(epochs[0], binarize(GREY, INDICES, "dynamic", seed=3).numpy())
    assert not np.array_equal(epochs[0], binarize(GREY, INDICES, "dynamic", seed=4).numpy())
    # Black stays black and white stays white; grey levels are the probabilities of a 1.
    assert epochs[0].flat[0] == 0.0 and epochs[0].flat[-1] == 1.0
    many = binarize(np.full((200, 8, 8, 1), 0.3, np.float32), np.arange(200), "dynamic").numpy()
    assert many.mean() == pytest.approx(0.3, abs=0.01)


def test_works_in_a_tf_data_map():
    images = tf.constant(GREY)
    dataset = tf.data.Dataset.range(6).batch(4).map(
        lambda index: binarize(tf.gather(images, index), index, "dynamic", seed=3, draw=1))
    mapped = np.concatenate(list(dataset.as_numpy_iterator()))
    np.testing.assert_array_equal(mapped, binarize(GREY, INDICES, "dynamic", seed=3, draw=1).numpy())


def test_unknown_mode():
    with pytest.raises(ValueError, match="none, static, dynamic"):
        binarize(GREY, INDICES, "threshold")
