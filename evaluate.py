"""Evaluate the latest exported encoder and decoder: `python evaluate.py --split test` (see `--help`)."""

import sys

from keras_vae import cli

if __name__ == "__main__":
    sys.exit(cli.evaluate())
