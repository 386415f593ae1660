"""Choosing a tf.distribute strategy and the facts about it the training loop needs."""

import json
import os

import tensorflow as tf

from keras_vae.errors import UserError


def make_strategy(name):
    """Returns the strategy named `name`.

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
                "The multiworker strategy needs the TF_CONFIG environment variable describing the "
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
        example = replicas * max(1, round(batch_size / replicas))
        raise UserError(f"The global batch must split evenly over {replicas} replicas. Received: "
                        f"batch_size={batch_size}; use a multiple of {replicas}, e.g. batch_size={example}.")
