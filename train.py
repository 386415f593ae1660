"""Train a VAE and export it: `python train.py --epochs 50` (see `--help`)."""

import sys

from keras_vae import cli

if __name__ == "__main__":
    sys.exit(cli.train())
