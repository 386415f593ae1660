"""Setting up the devices before TensorFlow first uses them, for training and evaluation alike."""

import tensorflow as tf


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


def has_gpu():
    """Whether TensorFlow sees a GPU."""
    return bool(tf.config.list_logical_devices("GPU"))


def resolve_jit_compile(setting):
    """Whether to XLA-compile: "on", "off", or "auto" = on when a GPU is visible.

    On the CPUs measured, TensorFlow's own kernels (oneDNN) beat XLA for both architectures
    (docs/performance.md), so CPU-only machines run without it.
    """
    return {"on": True, "off": False}.get(setting, has_gpu())
