"""Shared test set-up: two logical CPU devices (for MirroredStrategy), small synthetic data."""

import gzip
import os
import socket
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initialises its devices, hence at import time.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# The exactness tests compare runs to 1e-5 or closer; on Ampere and newer GPUs TensorFlow would
# otherwise multiply float32 matrices in TF32 (10-bit mantissa). Off here, and in the scripts the
# tests start (NVIDIA's switch, read by cuBLAS and cuDNN themselves).
tf.config.experimental.enable_tensor_float_32_execution(False)
NO_TF32 = {"NVIDIA_TF32_OVERRIDE": "0"}

REPO = Path(__file__).resolve().parents[1]


def synthetic_images(count, height=28, width=28, seed=0):
    """Uint8 images [count, height, width, 1]: blurred random blobs, so a VAE has something to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    centres = rng.uniform(0.25, 0.75, size=(count, 2)) * (height, width)
    radius = rng.uniform(2.0, height / 4, size=(count, 1, 1))
    distance = np.hypot(yy - centres[:, 0, None, None], xx - centres[:, 1, None, None])
    images = np.clip(1.5 - distance / radius, 0.0, 1.0)
    return (images[..., None] * 255).astype(np.uint8)


def write_idx(path, array, magic):
    """Writes an IDX file of unsigned bytes (gzip-compressed when the name ends in .gz)."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    """A folder with small MNIST-style IDX files: 256 training and 64 test images, with labels."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, count, seed in (("train", 256, 1), ("t10k", 64, 2)):
        images = synthetic_images(count, seed=seed)[..., 0]
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
    return folder


def assert_labels_follow_images(batches, images, labels):
    """Every (images, labels) batch pairs each image with its own label in the split's (images, labels).

    Batches may be uint8 (training) or in [0, 1] (evaluation); the split's images must differ.
    """
    label_of = {image.tobytes(): label for image, label in zip(images, labels, strict=True)}
    assert len(label_of) == len(images)
    seen = 0
    for batch_images, batch_labels in batches:
        batch_images, batch_labels = np.asarray(batch_images), np.asarray(batch_labels)
        if batch_images.dtype != np.uint8:
            batch_images = np.round(batch_images * 255).astype(np.uint8)
        assert batch_labels.dtype == np.int32
        assert [label_of[image.tobytes()] for image in batch_images] == batch_labels.tolist()
        seen += len(batch_labels)
    assert seen


def run_script(script, *args, cwd, env=None, timeout=300):
    """Runs one of the repository's scripts in a fresh Python process."""
    import subprocess

    return subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **NO_TF32, **(env or {})},
    )


def _random_state():
    """The process-wide random state a command's `keras.utils.set_random_seed` replaces."""
    import random

    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    from tensorflow.python.eager import context

    eager = context.context()
    keras_state = {name: global_state.get_global_attribute(name)
                   for name in (GLOBAL_RANDOM_SEED, GLOBAL_SEED_GENERATOR)}
    # TensorFlow's global seed, and the generator of op seeds it starts (made by the first set_seed).
    tf_rng = getattr(eager, "_rng", None)
    tf_rng = tf_rng and tf_rng.getstate()
    saved = random.getstate(), np.random.get_state(), eager._seed, tf_rng, keras_state

    def restore():
        python_state, numpy_state, tf_seed, tf_rng_state, keras_attributes = saved
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        context.set_global_seed(tf_seed)
        if tf_rng_state is None:
            del eager._rng
        else:
            eager._rng.setstate(tf_rng_state)
        for name, value in keras_attributes.items():
            global_state.set_global_attribute(name, value)

    return restore


@pytest.fixture
def command(monkeypatch, capsys):
    """Runs a script's command in this process, as the script would in a fresh one.

    `command("train.py", *args, cwd=folder, env={...})` calls the script's `keras_vae.cli` function
    with `sys.argv` and the environment set, and returns a `subprocess.CompletedProcess` of its exit
    status (a `UserError`'s, or an option error's `SystemExit`), stdout and stderr; an exception it
    lets through fails the test, as a traceback from the script would. It spares `run_script`'s
    TensorFlow import where the process is not the point. The process-wide state a command sets
    (dtype policy, random seeds, environment, working directory) is put back afterwards.
    """
    import subprocess

    import keras

    from keras_vae import cli

    restore_random = _random_state()
    policy = keras.mixed_precision.global_policy()
    environment = dict(os.environ)

    def run(script, *args, cwd, env=None):
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [script, *args])
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            status = getattr(cli, Path(script).stem)()
        except SystemExit as exit_status:
            status = exit_status.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], status, out, err)

    yield run
    restore_random()
    keras.mixed_precision.set_global_policy(policy)
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="session")
def tiny_vae():
    """A small untrained MLP VAE for 28x28x1 images with a 4-dimensional latent space."""
    from keras_vae.models import build_vae

    return build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=16, seed=0)


@pytest.fixture(scope="session")
def published(tiny_vae, tmp_path_factory):
    """An export root holding version 1 of `tiny_vae`; tests must not change it."""
    from keras_vae import publish

    root = tmp_path_factory.mktemp("published")
    publish(root, tiny_vae, {"config.json": "{}\n"})
    return root


def write_pictures(folder, images, suffix=".png", names=None):
    """Writes uint8 images [N, H, W, C] as PNG or JPEG files (`suffix`) into `folder`; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if suffix == ".png" else lambda image: tf.io.encode_jpeg(image, quality=95)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{names[index] if names else f'{index:05d}'}{suffix}"
        path.write_bytes(encode(image).numpy())
        paths.append(path)
    return paths


def colour_images(count, height=16, width=16, seed=0):
    """Uint8 RGB images [count, height, width, 3]: a blob per channel, so a VAE has something to learn."""
    return np.concatenate([synthetic_images(count, height, width, seed + c) for c in range(3)], axis=-1)


@pytest.fixture(scope="session")
def mirrored():
    """The session's one MirroredStrategy over the two logical CPUs.

    Strategies made one after another in a process number their collective ops alike, and a later
    one's all-reduce can meet an earlier one's shapes ("Shape mismatch in the collective instance").
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def proxy(monkeypatch):
    """An HTTPS proxy that accepts connections, so the offline check passes without the internet."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield
    server.close()


@pytest.fixture(scope="session")
def fake_root(published, tmp_path_factory):
    """An export root for the fakes' own tests: the published decoder (linked) and toy/1 (fake_models.py)."""
    import fake_models

    root = tmp_path_factory.mktemp("fakes")
    (root / "decoder").symlink_to(published / "decoder")
    fake_models.save_toy(root / "toy" / "1", root)
    return root


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory):
    """(export root, IDX folder) of a small MLP VAE trained for seconds on synthetic IDX images and
    published as version 1 with the config.json and metrics.json train.py writes; tests must not change it."""
    import json

    import keras

    from keras_vae import publish
    from keras_vae.models import build_vae

    folder = tmp_path_factory.mktemp("trained")
    data = folder / "mnist"
    data.mkdir()
    for prefix, count, seed in (("train", 256, 1), ("t10k", 96, 2)):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", synthetic_images(count, seed=seed)[..., 0], 2051)
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
    vae = build_vae("mlp", (28, 28, 1), latent_dim=4, hidden_dim=32, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = synthetic_images(256, seed=1).astype("float32") / 255.0
    history = vae.fit(x, epochs=3, batch_size=64, validation_split=0.25, verbose=0).history
    records = [{"epoch": epoch + 1, **{key: float(values[epoch]) for key, values in history.items()}}
               for epoch in range(3)]
    options = {"arch": "mlp", "latent_dim": 4, "hidden_dim": 32, "likelihood": "bernoulli", "epochs": 3}
    publish(folder / "models", vae, {"config.json": json.dumps(options),
                                     "metrics.json": json.dumps({"final": records[-1], "history": records})})
    return folder / "models", data


@pytest.fixture(scope="session")
def trained_server(trained_export):
    """A strict TensorFlow Serving fake (tests/fake_serving.py) serving `trained_export`."""
    import fake_serving

    core = fake_serving.ModelServer(trained_export[0])
    yield core
    core.close()


SHAPE, LATENT = (28, 28, 1), 4
CLASSES = tuple(f"digit {c}" for c in range(10))
FAMILY = {"iwae": {"objective": "iwae", "iw_samples": 3}, "vamp": {"prior": "vamp", "pseudo_inputs": 5},
          "conditional": {"classes": CLASSES}}


@pytest.fixture(scope="session")
def variants(tmp_path_factory):
    """{name: (the VAE, its export root with version 1)} of the model family's variants (FAMILY): tiny
    untrained models, the class Gaussians set apart so that every class draws different images."""
    from keras_vae import publish
    from keras_vae.models import build_vae

    rng = np.random.default_rng(0)
    built = {}
    for name, options in FAMILY.items():
        vae = build_vae("mlp", SHAPE, latent_dim=LATENT, hidden_dim=16, seed=0, **options)
        if vae.class_prior is not None:
            vae.class_prior.assign_parameters(3 * rng.standard_normal((len(CLASSES), LATENT)),
                                              np.zeros((len(CLASSES), LATENT)))
        root = tmp_path_factory.mktemp(name)
        publish(root, vae, {"config.json": '{"likelihood": "bernoulli"}\n'})
        built[name] = vae, root
    return built


@pytest.fixture(scope="session")
def conditional_server(variants):
    """A strict TensorFlow Serving fake (tests/fake_serving.py) serving the conditional variant's export."""
    import fake_serving

    core = fake_serving.ModelServer(variants["conditional"][1])
    yield core
    core.close()
