"""The commands: parse options into a config, run one library function, report user errors.

Options are parsed before TensorFlow is imported (each command imports its body only then), so
`--help` and bad options answer at once. The library names Python arguments in its messages
(`batch_size=300`, "a smaller `batch_size`"); the commands print them as their options
(`TrainConfig.in_options`).
"""

import os
import sys
import warnings

from keras_vae.errors import UserError


def parse(config_class, argv=None):
    """The config of a command line; exits with status 2 and a usage message on bad options."""
    config = config_class.from_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # tf.distribute reads dataset options in graph mode, which makes tf.data warn about an API change.
    warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options")
    return config


def run(body, config):
    """Runs a command's `body(config)`.

    Returns:
        The process exit status: 0, or the `exit_status` of a `UserError` after printing its message
        with arguments written as the command's options.
    """
    try:
        body(config)
    except UserError as error:
        print(f"{error.label}: {config.in_options(str(error))}", file=sys.stderr)
        return error.exit_status
    return 0


def train(argv=None):
    """`keras-vae-train` and `python train.py`: train a VAE and export it."""
    from keras_vae.config import TrainConfig

    config = parse(TrainConfig, argv)
    from keras_vae.training.run import train as body

    return run(body, config)


def sample(argv=None):
    """`keras-vae-sample` and `python sample.py`: draw images from an exported decoder."""
    from keras_vae.config import SampleConfig

    config = parse(SampleConfig, argv)
    from keras_vae.serving.sample import sample as body

    return run(body, config)


def evaluate(argv=None):
    """`keras-vae-evaluate` and `python evaluate.py`: evaluate an exported VAE."""
    from keras_vae.config import EvaluateConfig

    config = parse(EvaluateConfig, argv)
    from keras_vae.evaluation.evaluate import run as body

    return run(body, config)


def explore(argv=None):
    """`keras-vae-explore` and `python explore.py`: serve a page to explore an exported or served VAE."""
    from keras_vae.config import ExploreConfig

    config = parse(ExploreConfig, argv)
    from keras_vae.explore.run import explore as body

    return run(body, config)
