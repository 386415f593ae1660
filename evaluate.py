"""Evaluate the latest exported VAE: `python evaluate.py --split test` (see `--help`)."""

import sys

from keras_vae import cli

if __name__ == "__main__":
    sys.exit(cli.evaluate())
