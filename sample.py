"""Draw images from the latest exported decoder: `python sample.py` (see `--help`)."""

import sys

from keras_vae import cli

if __name__ == "__main__":
    sys.exit(cli.sample())
