"""Folders of pictures: listing, splits, decoding, the streamed training order, and bad pictures."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import assert_labels_follow_images, colour_images, synthetic_images, write_pictures
from keras_vae import data
from keras_vae.errors import UserError


@pytest.fixture
def classes(tmp_path):
    """Class subfolders cat/ (12 PNGs) and dog/ (8 JPEGs) of RGB 8x12 pictures, a README, a hidden file."""
    folder = tmp_path / "pictures"
    write_pictures(folder / "cat", colour_images(12, 8, 12, seed=1))
    write_pictures(folder / "dog", colour_images(8, 8, 12, seed=5), suffix=".jpg")
    (folder / "README.txt").write_text("not a picture")
    (folder / "cat/._00000.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: ignored
    return folder


def test_class_folders_give_labels_and_every_split_mixes_them(classes):
    split = data.open_split("train", image_dir=classes)
    assert (split.count, split.image_shape) == (20, (8, 12, 3))
    assert "2 class folders" in split.description and "ignoring 1 other files" in split.description
    images, labels = split.load_all()
    assert images.dtype == np.uint8 and sorted(labels.tolist()) == [0] * 12 + [1] * 8
    head, tail = (data.open_split(s, image_dir=classes) for s in ("train[:50%]", "train[50%:]"))
    assert sorted(head.paths + tail.paths) == sorted(split.paths) and head.count == 10
    assert set(head.labels) == set(tail.labels) == {0, 1}  # a hash order, not the sorted names
    # The same split is the same files in every run and in every process.
    assert data.open_split("train[:50%]", image_dir=classes).paths == head.paths
    cat = np.asarray(Image.open(classes / "cat/00000.png"))
    assert any(np.array_equal(cat, image) for image in images)


def test_pictures_directly_in_the_folder_have_no_labels(tmp_path):
    write_pictures(tmp_path, synthetic_images(5, 8, 8))
    split = data.open_split("train", image_dir=tmp_path)
    assert split.labels is None and split.image_shape == (8, 8, 1)
    np.testing.assert_array_equal(np.sort(split.load_all()[0], axis=0),
                                  np.sort(synthetic_images(5, 8, 8), axis=0))


def test_gif_and_bmp_decode(tmp_path):
    image = colour_images(1, 8, 8)[0]
    for suffix in (".gif", ".bmp"):
        Image.fromarray(image).save(tmp_path / f"picture{suffix}")
    images, _ = data.open_split("train", image_dir=tmp_path).load_all()
    assert images.shape == (2, 8, 8, 3)
    bmp = next(i for i, p in enumerate(sorted(tmp_path.iterdir())) if p.suffix == ".bmp")
    assert np.array_equal(images[bmp], image) or np.array_equal(images[1 - bmp], image)


def test_resize_and_grayscale(classes):
    split = data.open_split("train", image_dir=classes, image_size=(4, 6), grayscale=True)
    images, _ = split.load_all()
    assert split.image_shape == (4, 6, 1) and images.shape == (20, 4, 6, 1)
    first = tf.io.decode_png((classes / "cat/00000.png").read_bytes())
    expected = tf.image.resize(tf.image.rgb_to_grayscale(first), (4, 6), antialias=True)
    index = split.paths.index(str(classes / "cat/00000.png"))
    np.testing.assert_allclose(images[index], np.round(expected.numpy()), atol=1)


def test_streamed_order_is_the_in_memory_order_and_resumes_exactly(classes):
    split = data.open_split("train", image_dir=classes)
    streamed = split.training_source(batch_size=6, seed=3)
    in_memory = data.InMemoryImages(split.load_all()[0], batch_size=6, seed=3)
    assert streamed.steps_per_epoch == in_memory.steps_per_epoch == 3
    batches = list(streamed.dataset().take(9).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(batches), np.stack(list(in_memory.dataset().take(9))))
    assert not np.array_equal(batches[0], batches[3])  # another order in the next epoch
    resumed = list(streamed.dataset(first_epoch=1, first_step=2).take(4).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack(resumed), np.stack(batches[5:9]))


class _Context:
    """A tf.distribute.InputContext as `distribute_datasets_from_function` passes it."""

    def __init__(self, pipelines, pipeline, replicas):
        self.num_input_pipelines, self.input_pipeline_id, self.num_replicas_in_sync = (
            pipelines, pipeline, replicas)

    def get_per_replica_batch_size(self, batch_size):
        return batch_size // self.num_replicas_in_sync


def test_each_worker_gets_its_slice_of_every_global_batch(classes):
    source = data.open_split("train", image_dir=classes).training_source(batch_size=8, seed=0)
    whole = np.stack(list(source.dataset(0, 1).take(2).as_numpy_iterator()))
    # Two workers with two replicas each: four per-replica batches of 2 per global batch.
    parts = [list(source.dataset(0, 1, _Context(2, worker, 4)).take(4).as_numpy_iterator())
             for worker in range(2)]
    for step in range(2):
        pieces = [parts[worker][2 * step + replica] for worker in range(2) for replica in range(2)]
        np.testing.assert_array_equal(np.concatenate(pieces), whole[step])


def _errors(folder, **options):
    split = data.open_split("train", image_dir=folder, **options)
    with pytest.raises(tf.errors.OpError):
        for _ in split.evaluation_dataset(4):
            pass
    return split.find_bad()


def test_bad_pictures_are_named(classes):
    (classes / "cat/00003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (classes / "dog/gone.png").symlink_to(classes / "nowhere.png")  # listed, unreadable
    messages = _errors(classes)
    assert any("cat/00003.png" in m and "cannot decode" in m for m in messages), messages
    assert any("dog/gone.png" in m and "cannot read" in m for m in messages), messages
    assert len(messages) == 2


def test_pictures_of_another_size_or_kind_are_named(classes):
    write_pictures(classes / "cat", colour_images(1, 9, 12), names=["large"])
    write_pictures(classes / "dog", synthetic_images(1, 8, 12), names=["grey"])
    messages = _errors(classes)
    assert sorted(messages) == sorted([
        f"{classes}/cat/large.png is 9 x 12 pixels, but the first picture is 8 x 12: resize them all, "
        "with image_size=(HEIGHT, WIDTH).",
        f"{classes}/dog/grey.png is a grey picture, but the first picture is colour: convert the "
        "pictures to one kind, or use grayscale=True.",
    ])
    assert not data.open_split("train", image_dir=classes, image_size=(8, 8), grayscale=True).find_bad()


@pytest.mark.parametrize(("make", "message"), [
    (lambda f: None, "holds no pictures"),
    (lambda f: (f / "notes.txt").write_text("x"), "holds no pictures"),
    (lambda f: [write_pictures(f / sub, synthetic_images(1, 8, 8)) for sub in ("", "a")],
     "both directly and in subfolders"),
    (lambda f: (f / "broken.png").write_bytes(b"GIF89a broken"), "Cannot decode .*broken.png"),
])
def test_folders_that_cannot_be_used(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(UserError, match=message):
        data.open_split("train", image_dir=tmp_path)


def test_split_errors(classes):
    with pytest.raises(UserError, match="one split, 'train'"):
        data.open_split("test", image_dir=classes)
    with pytest.raises(UserError, match="is empty"):
        data.open_split("train[20:]", image_dir=classes)
    with pytest.raises(UserError, match="not a folder"):
        data.open_split("train", image_dir=classes / "missing")


def test_image_options_on_the_command_line_and_in_config_json(tmp_path, capsys):
    from keras_vae.config import EvaluateConfig, TrainConfig

    config = TrainConfig.from_args(["--image-dir", "photos", "--image-size", "64", "48", "--grayscale"])
    assert config.image_size == (64, 48) and config.grayscale
    assert (config.train_split, config.val_split) == ("train[:90%]", "train[90%:]")
    assert (TrainConfig().train_split, TrainConfig().val_split) == ("train", "test")
    assert EvaluateConfig(image_dir="photos").split == "train[90%:]"
    config.write_json(tmp_path / "config.json")
    config.check_resumable_from(json.loads((tmp_path / "config.json").read_text()))  # the list is the tuple
    with pytest.raises(UserError, match="--image-size 64 48 -> 32 32"):
        TrainConfig(image_dir="photos", image_size=(32, 32), grayscale=True).check_resumable_from(
            json.loads((tmp_path / "config.json").read_text()))
    for bad, message in ((["--image-size", "64", "0"], "at least 1"),
                         (["--image-dir", "a", "--data-dir", "b"], "not both"),
                         (["--data-dir", "b", "--grayscale"], "not to IDX files")):
        with pytest.raises(SystemExit) as exit_status:
            TrainConfig.from_args(bad)
        assert exit_status.value.code == 2 and message in capsys.readouterr().err



def test_class_folders_name_the_classes_and_their_labels_follow_the_pictures(classes, tmp_path):
    split = data.open_split("train[:80%]", image_dir=classes)
    images, labels = split.load_all()
    assert split.classes == ("cat", "dog")
    source = split.training_source(batch_size=4, seed=1, labels=True)
    assert_labels_follow_images(source.dataset().take(2 * source.steps_per_epoch).as_numpy_iterator(),
                                images, labels)
    assert_labels_follow_images(split.evaluation_dataset(5, labels=True).as_numpy_iterator(), images, labels)
    write_pictures(tmp_path / "flat", synthetic_images(6, 8, 8))
    flat = data.open_split("train", image_dir=tmp_path / "flat")
    assert flat.classes is None
    with pytest.raises(UserError, match=r"has no labels .*a folder of class subfolders"):
        flat.training_source(batch_size=2, seed=0, labels=True)
