"""The options of the commands that read an export: sample.py, evaluate.py, explore.py."""

import dataclasses

from keras_vae.config.base import Config, DataConfig, option
from keras_vae.errors import UserError


@dataclasses.dataclass(frozen=True)
class SampleConfig(Config):
    """Draw images from an exported decoder SavedModel and write them as a PNG grid."""

    model_dir: str = option("saved_models/decoder", "folder holding numbered decoder versions")
    version: int | None = option(None, "decoder version to use (default: the latest)", minimum=1)
    n: int = option(64, "number of images (of each class asked for, for a class-conditional model)",
                    minimum=1)
    label: str | None = option(
        None, "class-conditional models: the class to draw, by index or name, or 'all' for one row per "
        "class (the default for them)"
    )
    seed: int = option(0, "seed for the latent draws", minimum=0)
    out: str = option("samples.png", "PNG file to write")
    server: str | None = option(
        None, "draw from the 'decoder' model of this TensorFlow Serving REST API (e.g. "
        "http://localhost:8501) instead of --model-dir"
    )

    def validate(self):
        if self.server is not None and not self.server.startswith(("http://", "https://")):
            raise UserError(f"--server must be a URL such as http://localhost:8501; got {self.server!r}.")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(DataConfig):
    """Evaluate an exported VAE: negative ELBO, importance-weighted NLL, pictures."""

    export_dir: str = option("saved_models", "export root holding vae/<version>/")
    version: int | None = option(
        None, "version to evaluate (default: the latest)", minimum=1
    )
    split: str | None = option(
        None, "split to evaluate, TFDS slicing syntax (e.g. 'test[8000:]'); default 'test', or "
        "'train[90%:]' of an --image-dir"
    )
    k: int = option(1000, "importance samples per image for the NLL estimate", minimum=1)
    batch_size: int = option(100, "images per step", minimum=1)
    seed: int = option(0, "seed for the latent draws, dynamic binarization and prior samples", minimum=0)
    binarize: str = option(
        "none",
        "pixels: none = grey levels in [0, 1]; static = one fixed Bernoulli draw per image; "
        "dynamic = a Bernoulli draw that depends on --seed",
        choices=("none", "static", "dynamic"),
    )
    out_dir: str = option("evaluation", "folder for evaluation.json and the pictures")
    pictures: bool = option(True, "write the pictures (PNG) as well as the numbers")

    def validate(self):
        super().validate()
        if self.split is None:
            object.__setattr__(self, "split", self.default_split(1))


@dataclasses.dataclass(frozen=True)
class ExploreConfig(DataConfig):
    """Serve a page to explore an exported VAE: samples, the latent map, traversals, interpolations."""

    export_dir: str = option("saved_models", "export root holding vae/<version>/ (with --server: for facts)")
    version: int | None = option(None, "version (default: the latest, or the one served now)", minimum=1)
    server: str | None = option(None, "relay to the 'vae' model of this TensorFlow Serving REST API (e.g. "
                                "http://localhost:8501), pinned to one version, instead of --export-dir")
    split: str | None = option(None, "split whose posterior means make the map (default: 'test', or "
                               "'train[90%:]' of an --image-dir)")
    map_points: int = option(2000, "images of --split on the map (its first ones)", minimum=1)
    host: str = option("127.0.0.1", "interface to listen on; any but the loopback opens the page, without "
                       "authentication, to the network")
    port: int = option(8600, "port to listen on (0: any free one)", minimum=0)
    max_samples: int = option(256, "the largest sample grid one request may ask for", minimum=1)
    max_steps: int = option(64, "the most points one interpolation may ask for", minimum=2)
    max_upload_bytes: int = option(2_000_000, "the largest request body (an uploaded picture)", minimum=1024)

    def validate(self):
        super().validate()
        SampleConfig.validate(self)  # the same --server check
