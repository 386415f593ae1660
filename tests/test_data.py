import gzip

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_labels_follow_images, write_idx
from keras_vae import data
from keras_vae.errors import UserError


def test_split_slices_match_tfds_semantics(idx_dir):
    images, labels = data.load_split("test", data_dir=idx_dir)
    assert images.shape == (64, 28, 28, 1) and images.dtype == np.uint8
    head, head_labels = data.load_split("test[:48]", data_dir=idx_dir)
    tail, _ = data.load_split("test[48:]", data_dir=idx_dir)
    np.testing.assert_array_equal(np.concatenate([head, tail]), images)
    np.testing.assert_array_equal(head_labels, labels[:48])
    quarter, _ = data.load_split("test[-25%:]", data_dir=idx_dir)
    np.testing.assert_array_equal(quarter, images[48:])
    both, _ = data.load_split("train[:10]+test[:5]", data_dir=idx_dir)
    assert len(both) == 15


@pytest.mark.parametrize("expression", ["test[:8000", "test[a:b]", "test[[1:2]]", ""])
def test_unparsable_split(expression, idx_dir):
    with pytest.raises(UserError, match="TFDS slicing syntax"):
        data.load_split(expression, data_dir=idx_dir)


def test_empty_split(idx_dir):
    with pytest.raises(UserError, match="empty"):
        data.load_split("test[64:]", data_dir=idx_dir)


def test_missing_file_is_named(idx_dir):
    (idx_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        data.load_split("test", data_dir=idx_dir)


def test_truncated_gzip_is_named(idx_dir):
    path = idx_dir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz"):
        data.load_split("test", data_dir=idx_dir)


def test_size_that_does_not_match_header(idx_dir):
    path = idx_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(UserError, match="truncated or corrupt"):
        data.load_split("test", data_dir=idx_dir)


def test_wrong_magic_number(idx_dir):
    write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", np.zeros(10, np.uint8), 2049)
    with pytest.raises(UserError, match="magic number"):
        data.load_split("test", data_dir=idx_dir)


def test_labels_of_another_length(idx_dir):
    write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8), 2049)
    with pytest.raises(UserError, match="10 labels but"):
        data.load_split("test", data_dir=idx_dir)


def test_uncompressed_files_and_missing_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.full((3, 4, 5), 255, np.uint8), 2051)
    images, labels = data.load_split("train", data_dir=tmp_path)
    assert images.shape == (3, 4, 5, 1) and labels is None


def _epochs(dataset, steps, epochs):
    batches = list(dataset.take(steps * epochs).as_numpy_iterator())
    return [np.concatenate(batches[e * steps:(e + 1) * steps]) for e in range(epochs)]


def test_training_order_is_a_function_of_seed_and_epoch():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    epochs = _epochs(data.training_dataset(images, 6, seed=3), steps=3, epochs=3)
    for epoch in epochs:
        assert epoch.dtype == np.uint8  # scaled on the device, by the model
        assert len(set(epoch.ravel())) == 18  # no image twice within an epoch; two left over
        assert epoch.max() < 20
    assert not np.array_equal(epochs[0], epochs[1])
    again = _epochs(data.training_dataset(images, 6, seed=3), steps=3, epochs=3)
    np.testing.assert_array_equal(np.stack(epochs), np.stack(again))
    resumed = _epochs(data.training_dataset(images, 6, seed=3, first_epoch=2), steps=3, epochs=1)
    np.testing.assert_array_equal(resumed[0], epochs[2])
    other = _epochs(data.training_dataset(images, 6, seed=4), steps=3, epochs=1)
    assert not np.array_equal(other[0], epochs[0])


def test_evaluation_dataset_keeps_every_image_in_order():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = list(data.evaluation_dataset(images, 4).as_numpy_iterator())
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate(batches).ravel(), np.arange(10) / 255, rtol=1e-6)
    assert tf.float32 == tf.as_dtype(batches[0].dtype)


def test_binarized_training_data_is_a_function_of_seed_and_epoch():
    images = (np.random.default_rng(0).random((12, 4, 4, 1)) * 255).astype(np.uint8)
    first = _epochs(data.training_dataset(images, 4, seed=1, binarize_mode="dynamic"), steps=3, epochs=2)
    assert set(np.unique(np.stack(first))) == {0, 255} and first[0].dtype == np.uint8
    assert not np.array_equal(np.sort(first[0].ravel()), np.sort(first[1].ravel()))  # fresh draws
    resumed = _epochs(data.training_dataset(images, 4, seed=1, first_epoch=1, binarize_mode="dynamic"),
                      steps=3, epochs=1)
    np.testing.assert_array_equal(resumed[0], first[1])


def test_binarized_evaluation_data_is_the_same_every_time():
    images = (np.random.default_rng(0).random((10, 4, 4, 1)) * 255).astype(np.uint8)
    draws = [np.concatenate(list(data.evaluation_dataset(images, 4, mode).as_numpy_iterator()))
             for mode in ("dynamic", "static", "static")]
    assert set(np.unique(draws[0])) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[1], draws[2])


def test_idx_labels_follow_their_images_through_order_resume_and_worker_slices(idx_dir):
    split = data.open_split("train[:40]", data_dir=idx_dir)
    images, labels = split.load_all()
    assert split.classes == tuple("0123456789")
    assert data.open_split("train[:3]", data_dir=idx_dir).classes == split.classes  # the files' classes
    source = split.training_source(batch_size=8, seed=2, labels=True)
    batches = list(source.dataset().take(2 * source.steps_per_epoch).as_numpy_iterator())
    assert_labels_follow_images(batches, images, labels)
    unlabelled = list(split.training_source(batch_size=8, seed=2).dataset().take(len(batches)))
    np.testing.assert_array_equal(np.stack([b[0] for b in batches]), np.stack(unlabelled))  # same order
    resumed = list(source.dataset(first_epoch=1, first_step=2).take(3).as_numpy_iterator())
    for (image, label), (expected_image, expected_label) in zip(resumed, batches[7:10], strict=True):
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(label, expected_label)
    # Two workers with two replicas each: their four per-replica slices make up every global batch.
    parts = [list(source.dataset(0, 1, tf.distribute.InputContext(2, worker, 4)).take(4).as_numpy_iterator())
             for worker in range(2)]
    pieces = [parts[worker][replica][1] for worker in range(2) for replica in range(2)]
    np.testing.assert_array_equal(np.concatenate(pieces), batches[1][1])
    assert_labels_follow_images(split.evaluation_dataset(16, labels=True).as_numpy_iterator(), images, labels)


def test_labels_from_idx_files_without_label_files_say_what_is_missing(idx_dir):
    (idx_dir / "train-labels-idx1-ubyte.gz").unlink()
    split = data.open_split("train", data_dir=idx_dir)
    assert split.classes is None and split.load_all()[1] is None
    with pytest.raises(UserError, match=r"has no labels .* IDX files with their label files"):
        split.training_source(8, 0, labels=True)
    with pytest.raises(UserError, match=r"has no labels"):
        split.evaluation_dataset(8, labels=True)
    with pytest.raises(ValueError, match=r"labels must be one integer class index per image, shape \(3,\)"):
        data.InMemoryImages(split.load_all()[0][:3], 1, labels=[0.5, 1.0, 0.0])
