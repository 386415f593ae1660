"""Choosing a tf.distribute strategy and the facts about it the training loop needs."""

import json
import os

import tensorflow as tf

from keras_vae.errors import UserError


def configure_devices(memory_growth=True, deterministic=False):
    """Sets up the GPUs (if any) before TensorFlow first uses them.

    Args:
        memory_growth: Take GPU memory as it is needed rather than nearly all of it at the start, so
            that several processes (benchmark cases, test workers, evaluate.py beside a training)
            can share a GPU.
        deterministic: Turn on TensorFlow's op determinism, so that a GPU run repeats bit for bit
            (some GPU kernels are slower then; an op without a deterministic kernel raises an error).
            CPU runs repeat bit for bit anyway.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, memory_growth)
        except RuntimeError:  # already initialised by earlier work in this process: keep as it is
            pass
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_strategy(name):
    """Returns the strategy for `--strategy NAME`.

    auto: `MirroredStrategy` over the local GPUs when there are two or more; `OneDeviceStrategy` on
    the GPU when there is one (it copies the next batches to the GPU while the current one trains);
    else the default strategy. mirrored: `MirroredStrategy` over the local GPUs (the CPU when there
    are none). multiworker: `MultiWorkerMirroredStrategy`, with the cluster read from TF_CONFIG.
    """
    if name == "auto":
        gpus = len(tf.config.list_logical_devices("GPU"))
        if gpus == 1:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        name = "mirrored" if gpus > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "--strategy multiworker needs the TF_CONFIG environment variable describing the "
                'cluster, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' on the first machine.'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise UserError(f"TF_CONFIG is not valid JSON: {error}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"Unknown strategy {name!r}.")


def is_chief(strategy):
    """True for the one process that writes shared outputs (exports, config, sample grids)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


def check_global_batch(batch_size, strategy):
    """Raises a `UserError` unless the global batch splits evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; use a "
            f"multiple of {replicas}, e.g. {replicas * max(1, round(batch_size / replicas))}."
        )
