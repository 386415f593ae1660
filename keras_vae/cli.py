"""What the command-line scripts share: parse options, run one library function, report user errors."""

import importlib
import os
import sys
import warnings

from keras_vae.errors import UserError


def main(config_class, command, argv=None):
    """Parses `argv` into `config_class`, then calls `command` ("module.function") with the config.

    Options are parsed before TensorFlow is imported, so `--help` and bad options answer at once.

    Returns:
        The process exit status: 0, or the `exit_status` of a `UserError` after printing its message.
    """
    config = config_class.from_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # tf.distribute reads dataset options in graph mode, which makes tf.data warn about an API change.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")
    module_name, function_name = command.rsplit(".", 1)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        function(config)
    except UserError as error:
        print(f"{error.label}: {error}", file=sys.stderr)
        return error.exit_status
    return 0


def train(argv=None):
    """`keras-vae-train` and `python train.py`: train a VAE and export it."""
    from keras_vae.config import TrainConfig

    return main(TrainConfig, "keras_vae.run.train", argv)


def sample(argv=None):
    """`keras-vae-sample` and `python sample.py`: draw images from an exported decoder."""
    from keras_vae.config import SampleConfig

    return main(SampleConfig, "keras_vae.generate.sample", argv)


def evaluate(argv=None):
    """`keras-vae-evaluate` and `python evaluate.py`: evaluate an exported encoder and decoder."""
    from keras_vae.config import EvaluateConfig

    return main(EvaluateConfig, "keras_vae.evaluate.run", argv)
