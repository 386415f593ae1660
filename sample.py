"""Draw images from the latest exported decoder: `python sample.py` (see `--help`)."""

import sys

from keras_vae.cli import main
from keras_vae.config import SampleConfig

if __name__ == "__main__":
    sys.exit(main(SampleConfig, "keras_vae.generate.sample"))
