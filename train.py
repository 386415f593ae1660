"""Train a VAE and export it: `python train.py --epochs 50` (see `--help`)."""

import sys

from keras_vae.cli import main
from keras_vae.config import TrainConfig

if __name__ == "__main__":
    sys.exit(main(TrainConfig, "keras_vae.run.train"))
