"""GPU safeguards, tested on CPU by what they decide and ask TensorFlow to do."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_images
from keras_vae import data, devices
from keras_vae.config import EvaluateConfig, TrainConfig
from keras_vae.evaluation import estimators, evaluate
from keras_vae.models import build_vae
from keras_vae.training import Trainer, distribute, run


class _Stop(Exception):
    pass


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretends two GPUs are present; records the memory-growth and determinism calls."""
    calls = []
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    real_physical, real_logical = tf.config.list_physical_devices, tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real_physical(kind))
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real_logical(kind))
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda gpu, on: calls.append(("memory_growth", gpu.name, on)))
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism",
                        lambda: calls.append(("determinism",)))
    return calls


def test_memory_growth_is_on_for_every_gpu_unless_turned_off(two_gpus):
    devices.configure_devices()
    assert two_gpus == [("memory_growth", f"/physical_device:GPU:{i}", True) for i in range(2)]
    two_gpus.clear()
    devices.configure_devices(memory_growth=False, deterministic=True)
    assert two_gpus == [("memory_growth", f"/physical_device:GPU:{i}", False) for i in range(2)] + [
        ("determinism",)]


def test_train_and_evaluate_set_up_the_devices_before_anything_else(monkeypatch):
    recorded = []

    def configure(*args):
        recorded.append(args)
        raise _Stop

    monkeypatch.setattr(devices, "configure_devices", configure)
    monkeypatch.setattr(distribute, "make_strategy", lambda name: pytest.fail("strategy before devices"))
    assert TrainConfig().gpu_memory_growth and not TrainConfig().deterministic
    options = TrainConfig.from_args(["--no-gpu-memory-growth", "--deterministic"])
    for command, config in ((run.train, TrainConfig()), (run.train, options),
                            (evaluate.run, EvaluateConfig())):
        with pytest.raises(_Stop):
            command(config)
    assert recorded == [(True, False), (False, True), ()]


def test_one_gpu_gets_a_strategy_that_prefetches_to_it(monkeypatch):
    gpu = [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: gpu if kind == "GPU" else [])
    strategy = distribute.make_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:GPU:0",)


def test_the_one_device_path_trains_exactly_as_the_default_strategy():
    """OneDeviceStrategy on the second logical CPU: batches are prefetched to that device."""
    images = synthetic_images(48, 12, 12)
    weights = []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:1")):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build_vae("mlp", images.shape[1:], latent_dim=3, hidden_dim=16, seed=1)
            model.compile(optimizer=keras.optimizers.SGD(0.05))
            model.optimizer.build(model.trainable_variables)
        Trainer(model, strategy, steps_per_execution=3, progress=False).fit(
            data.InMemoryImages(images, 8, seed=0), data.evaluation_dataset(images[:20], 8), epochs=2)
        weights.append(model.get_weights())
    for one, other in zip(*weights, strict=True):
        np.testing.assert_array_equal(other, one)


def test_decoder_chunks_follow_the_device(two_gpus, monkeypatch):
    assert estimators.samples_per_call() == estimators.GPU_SAMPLES_PER_CALL > estimators.SAMPLES_PER_CALL
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])
    assert estimators.samples_per_call() == estimators.SAMPLES_PER_CALL == 2048


def test_exactness_tests_run_without_tf32():
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
