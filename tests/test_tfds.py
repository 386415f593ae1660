"""TensorFlow Datasets, through `tfds.testing.mock_data`: in memory, streamed, splits, offline check."""

import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import assert_labels_follow_images
from keras_vae import data
from keras_vae.config import TrainConfig
from keras_vae.data import tfds_data
from keras_vae.errors import UserError

EXAMPLES = 40


@pytest.fixture
def mock_tfds(proxy):
    with tfds.testing.mock_data(num_examples=EXAMPLES):
        yield


@pytest.mark.parametrize(("name", "shape"), [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_in_memory_and_streamed_read_the_same_images(mock_tfds, name, shape):
    in_memory = data.open_split("train", dataset=name)
    streamed = data.open_split("train", dataset=name, stream="on")
    assert "in memory" in in_memory.description and "streamed" in streamed.description
    assert in_memory.image_shape == streamed.image_shape == shape
    images, labels = in_memory.load_all()
    streamed_images, streamed_labels = streamed.load_all()
    assert images.shape == (EXAMPLES, *shape) and images.dtype == np.uint8
    np.testing.assert_array_equal(streamed_images, images)
    np.testing.assert_array_equal(streamed_labels, labels)
    evaluated = np.concatenate(list(streamed.evaluation_dataset(16).as_numpy_iterator()))
    np.testing.assert_allclose(evaluated, images / 255.0, rtol=1e-6)


def test_streamed_epochs_hold_every_image_once_and_resume_exactly(mock_tfds):
    split = data.open_split("train", dataset="cifar10", stream="on")
    images = split.load_all()[0]
    source = split.training_source(batch_size=8, seed=1)
    assert source.steps_per_epoch == EXAMPLES // 8
    steps = source.steps_per_epoch
    batches = list(source.dataset().take(2 * steps).as_numpy_iterator())
    for epoch in range(2):
        seen = np.concatenate(batches[epoch * steps:(epoch + 1) * steps])
        expected = images.reshape(EXAMPLES, -1)  # uint8: the model scales them on the device
        np.testing.assert_array_equal(np.sort(seen.reshape(EXAMPLES, -1), axis=0), np.sort(expected, axis=0))
    assert not np.array_equal(batches[0], batches[steps])
    resumed = list(source.dataset(first_epoch=1, first_step=2).take(steps - 2).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(resumed), np.stack(batches[steps + 2:]))
    again = list(split.training_source(batch_size=8, seed=1).dataset().take(steps).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(again), np.stack(batches[:steps]))


def test_streamed_resize_and_grayscale(mock_tfds):
    split = data.open_split("train", dataset="cifar10", image_size=(16, 8), grayscale=True)
    assert "streamed" in split.description  # resizing streams even with --stream auto
    images, _ = split.load_all()
    assert images.shape == (EXAMPLES, 16, 8, 1)


@pytest.mark.parametrize("expression", ["train[:0.5%]", "train[:4shard]", "train[10%:]+test"])
def test_tfds_split_syntax_is_parsed_by_tfds(mock_tfds, expression):
    assert data.open_split(expression, dataset="mnist").count > 0


def test_unparsable_tfds_split(mock_tfds):
    with pytest.raises(UserError, match="TFDS split syntax"):
        data.open_split("train[:x]", dataset="mnist")


class _Unprepared:
    """What the offline check reads of a TFDS builder whose data set is not on disk."""

    name = "mnist"
    url_infos = {"https://unreachable.invalid/mnist.gz": None}


@pytest.mark.parametrize("through_proxy", [False, True])
def test_offline_check_fails_fast_and_says_what_to_do(monkeypatch, through_proxy):
    for variable in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    expected = "unreachable.invalid is unreachable"
    if through_proxy:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        closed.close()
        expected += " through the proxy 127.0.0.1"
    start = time.monotonic()
    with pytest.raises(UserError, match=expected) as error:
        tfds_data._check_downloadable(_Unprepared())
    assert time.monotonic() - start < tfds_data.DOWNLOAD_PROBE_SECONDS + 1
    assert "your own folder of IDX files" in str(error.value) and "data_dir=DIR" in str(error.value)
    assert "--data-dir DIR" in TrainConfig.in_options(str(error.value))
    assert "shared" not in str(error.value)


@pytest.mark.parametrize(("name", "options", "path"), [
    ("mnist", {}, "in memory, from TFDS mnist"),
    ("cifar10", {"stream": "on", "arch": "conv", "likelihood": "gaussian"}, "streamed from the TFDS record"),
])
def test_train_py_default_path_runs_on_tfds(mock_tfds, tmp_path, capsys, name, options, path):
    from keras_vae.config import TrainConfig
    from keras_vae.training import run

    config = TrainConfig(dataset=name, epochs=1, batch_size=8, latent_dim=2, hidden_dim=8,
                         sample_every=0, progress=False, run_dir=str(tmp_path / "run"),
                         export_dir=str(tmp_path / "sm"), **options)
    summary = run.train(config)
    assert path in capsys.readouterr().out
    assert summary["steps"] == EXAMPLES // 8 and summary["version"] == 1
    assert np.isfinite(summary["final"]["val_loss"])


class TinyPictures(tfds.core.GeneratorBasedBuilder):
    """A real TFDS data set, prepared into record files on disk, without a download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(60, 0), "test": self._generate_examples(20, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for index in range(count):
            yield index, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": index % 3}


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    TinyPictures(data_dir=tmp_path).download_and_prepare()
    monkeypatch.setattr(tfds.core.utils.file_utils, "_REGISTERED_DATA_DIRS", {tmp_path})
    return "tiny_pictures"


def test_prepared_record_files_with_tfds_splits(prepared):
    assert data.open_split("train[:25%]", dataset=prepared).count == 15
    assert data.open_split("train[:1shard]+test[:10%]", dataset=prepared).count == 62
    with pytest.raises(UserError, match="Bad split 'validation'"):
        data.open_split("validation", dataset=prepared)
    in_memory = data.open_split("train[10:50]", dataset=prepared)
    streamed = data.open_split("train[10:50]", dataset=prepared, stream="on")
    assert streamed.count == in_memory.count == 40
    images, labels = in_memory.load_all()
    np.testing.assert_array_equal(streamed.load_all()[0], images)
    np.testing.assert_array_equal(streamed.load_all()[1], labels)
    source = streamed.training_source(batch_size=16, seed=0)
    epoch = np.concatenate(list(source.dataset().take(source.steps_per_epoch).as_numpy_iterator()))
    assert len({image.tobytes() for image in epoch}) == 32  # 2 full batches of different images
    assert {image.tobytes() for image in epoch} <= {image.tobytes() for image in images}


@pytest.mark.parametrize("stream", ["off", "on"])
def test_tfds_class_names_and_labels_follow_the_images(mock_tfds, stream):
    split = data.open_split("train", dataset="mnist", stream=stream)
    images, labels = split.load_all()
    assert split.classes == tuple("0123456789")
    source = split.training_source(batch_size=8, seed=1, labels=True)
    assert_labels_follow_images(source.dataset().take(2 * source.steps_per_epoch).as_numpy_iterator(),
                                images, labels)
    assert_labels_follow_images(split.evaluation_dataset(16, labels=True).as_numpy_iterator(), images, labels)
