"""Explore an exported VAE in the browser: `python explore.py`, then open the address it prints."""

import sys

from keras_vae import cli

if __name__ == "__main__":
    sys.exit(cli.explore())
