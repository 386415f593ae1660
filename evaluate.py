"""Evaluate the latest exported encoder and decoder: `python evaluate.py --split test` (see `--help`)."""

import sys

from keras_vae.cli import main
from keras_vae.config import EvaluateConfig

if __name__ == "__main__":
    sys.exit(main(EvaluateConfig, "keras_vae.evaluate.run"))
