"""Run configuration: one dataclass per command, built from the command line or from JSON.

Every default lives here. A config rejects unknown keys, values of the wrong type and values out of
range with a `UserError`, so a typo never silently falls back to a default.
"""

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path

from keras_vae.errors import UserError
from keras_vae.options import as_options


def _option(default, help, choices=None, minimum=None, metavar=None):
    """A dataclass field with the metadata the argument parser and the validator read."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def _value_type(field):
    """The plain type of a field (`str` for `str | None`, `tuple` for `tuple[int, int] | None`)."""
    kind = field.type
    if isinstance(kind, types.UnionType):
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    return typing.get_origin(kind) or kind


def _check_pair(flag, value, minimum):
    """A two-number option (e.g. --image-size HEIGHT WIDTH) as a tuple; JSON gives it as a list."""
    if isinstance(value, list):
        value = tuple(value)
    if not (isinstance(value, tuple) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise UserError(f"{flag} takes two whole numbers; got {value!r}.")
    if minimum is not None and min(value) < minimum:
        raise UserError(f"{flag} must be at least {minimum}; got {' '.join(map(str, value))}.")
    return value


def _shown(value):
    """An option's value as it is written on the command line."""
    return " ".join(map(str, value)) if isinstance(value, list) else value


class _Config:
    """Validation, parsing and JSON shared by the command configs."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flag = "--" + field.name.replace("_", "-")
            kind = _value_type(field)
            if value is None and isinstance(field.type, types.UnionType):
                continue
            if kind is tuple:
                object.__setattr__(self, field.name, _check_pair(flag, value, field.metadata.get("minimum")))
                continue
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, field.name, value)
                ok = True
            if not ok:
                raise UserError(f"{flag} must be of type {kind.__name__}, got {value!r}.")
            choices = field.metadata.get("choices")
            if choices and value not in choices:
                raise UserError(f"{flag} must be one of {', '.join(choices)}; got {value!r}.")
            minimum = field.metadata.get("minimum")
            if minimum is not None and value < minimum:
                raise UserError(f"{flag} must be at least {minimum}; got {value!r}.")
        self.validate()

    def validate(self):
        """Checks that involve more than one field; subclasses override."""

    @classmethod
    def parser(cls, prog=None):
        """The command-line parser: one option per field, with its help text and default."""
        parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__.splitlines()[0],
                                         allow_abbrev=False)
        for field in dataclasses.fields(cls):
            flag = "--" + field.name.replace("_", "-")
            kind = _value_type(field)
            # argparse expands %-formats in help texts; split expressions such as train[:90%] are literal.
            help_text = f"{field.metadata['help']} (default: {field.default})".replace("%", "%%")
            if kind is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                    default=field.default, help=help_text)
            elif kind is tuple:
                parser.add_argument(flag, type=int, nargs=2, default=field.default, help=help_text,
                                    metavar=field.metadata.get("metavar"))
            else:
                parser.add_argument(flag, type=kind, default=field.default,
                                    choices=field.metadata.get("choices"), help=help_text)
        return parser

    @classmethod
    def from_args(cls, argv=None):
        """Parses command-line arguments; exits with status 2 and a usage message on bad input."""
        parser = cls.parser()
        namespace = parser.parse_args(argv)
        try:
            return cls(**vars(namespace))
        except UserError as error:
            parser.error(str(error))

    @classmethod
    def in_options(cls, message):
        """`message` with the library's argument names that are this command's options written as
        options (see `keras_vae.options`)."""
        return as_options(message, {field.name for field in dataclasses.fields(cls)})

    def to_dict(self):
        return dataclasses.asdict(self)

    def write_json(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# The default splits of each kind of data: an image folder is one split, `train` (see keras_vae.data).
DEFAULT_SPLITS = {"files": ("train", "test"), "folder": ("train[:90%]", "train[90%:]")}
IMAGE_DIR_HELP = ("train on the PNG, JPEG, GIF and BMP pictures in this folder, or in its class "
                  "subfolders (one level); streamed from disk")
IMAGE_SIZE_HELP = ("resize every picture to HEIGHT WIDTH (bilinear, antialiased; the aspect ratio is "
                   "not kept)")
GRAYSCALE_HELP = "convert colour pictures to grey"
STREAM_HELP = ("TFDS data sets: stream from the prepared files instead of loading into memory; auto = "
               "stream those over 1 GiB decoded (folders always stream, IDX files never)")


@dataclasses.dataclass(frozen=True)
class _DataConfig(_Config):
    """The data options train.py and evaluate.py share (see keras_vae.data.open_split)."""

    dataset: str = _option("mnist", "TensorFlow Datasets image data set (mnist, fashion_mnist, ...)")
    data_dir: str | None = _option(
        None, "read IDX files (train-images-idx3-ubyte[.gz], t10k-...) from this folder instead of TFDS"
    )
    image_dir: str | None = _option(None, IMAGE_DIR_HELP)
    image_size: tuple[int, int] | None = _option(None, IMAGE_SIZE_HELP, minimum=1,
                                                 metavar=("HEIGHT", "WIDTH"))
    grayscale: bool = _option(False, GRAYSCALE_HELP)
    stream: str = _option("auto", STREAM_HELP, choices=("auto", "on", "off"))

    def validate(self):
        if self.image_dir is not None and self.data_dir is not None:
            raise UserError("Give --image-dir (pictures) or --data-dir (IDX files), not both.")
        if self.data_dir is not None and (self.image_size or self.grayscale):
            raise UserError("--image-size and --grayscale apply to --image-dir and TFDS data sets, not to "
                            "IDX files.")

    def default_split(self, which):
        """The default training (0) or validation (1) split of the data: see DEFAULT_SPLITS."""
        return DEFAULT_SPLITS["folder" if self.image_dir is not None else "files"][which]


@dataclasses.dataclass(frozen=True)
class TrainConfig(_DataConfig):
    """Train a variational autoencoder and export it as SavedModels (the decoder, and the whole VAE)."""

    train_split: str | None = _option(
        None, "training split, TFDS slicing syntax (e.g. 'test[:8000]'); default 'train', or "
        "'train[:90%]' of an --image-dir"
    )
    val_split: str | None = _option(
        None, "validation split, TFDS slicing syntax (e.g. 'test[8000:]'); default 'test', or "
        "'train[90%:]' of an --image-dir"
    )
    skip_bad_pictures: bool = _option(
        False, "--image-dir: train without the pictures that cannot be decoded (every picture is checked "
        "before training; without this option, any bad one stops it), listing them in config.json"
    )
    arch: str = _option("mlp", "network architecture", choices=("mlp", "conv"))
    latent_dim: int = _option(20, "size of the latent space", minimum=1)
    hidden_dim: int = _option(400, "width of the hidden dense layer", minimum=1)
    likelihood: str = _option(
        "bernoulli", "reconstruction likelihood", choices=("bernoulli", "gaussian")
    )
    conditional: bool = _option(False, "class-conditional VAE: encoder and decoder also see y, one-hot over "
                                "the data's classes (IDX label files, TFDS 'label', class subfolders)")
    prior: str = _option("auto", "p(z): normal = N(0, I); class = a learned Gaussian per class; vamp = the "
                         "VampPrior of --pseudo-inputs learned pictures; auto = class with --conditional, "
                         "else normal", choices=("auto", "normal", "class", "vamp"))
    pseudo_inputs: int | None = _option(None, "--prior vamp: M, its pseudo-inputs, which start as the first "
                                        "M training images of the seed's order; default 500", minimum=1)
    objective: str = _option("elbo", "elbo, or iwae: the importance-weighted bound of --iw-samples samples "
                             "per image", choices=("elbo", "iwae"))
    iw_samples: int = _option(1, "--objective iwae: K, the samples per image (about K times the decoder's "
                              "time and memory)", minimum=1)
    beta: float = _option(1.0, "weight of the KL term (beta-VAE)", minimum=0.0)
    kl_warmup_epochs: int = _option(
        0, "raise the KL weight linearly from 0 to --beta over this many epochs", minimum=0
    )
    binarize: str = _option(
        "none", "pixels: none = grey levels; static = one fixed Bernoulli draw per image; dynamic = a "
        "fresh draw every epoch (validation then uses the static draw)",
        choices=("none", "static", "dynamic"),
    )
    epochs: int = _option(10, "number of training epochs", minimum=1)
    batch_size: int = _option(128, "global batch size, split over all replicas", minimum=1)
    optimizer: str = _option("adam", "optimizer", choices=("adam", "sgd"))
    learning_rate: float = _option(1e-3, "learning rate")
    seed: int = _option(0, "seed for initialisation, data order and sampling noise", minimum=0)
    strategy: str = _option(
        "auto",
        "tf.distribute strategy; auto = mirrored when more than one GPU is visible, else default",
        choices=("auto", "default", "mirrored", "multiworker"),
    )
    steps_per_execution: int = _option(
        10, "training steps run per call into TensorFlow (fewer Python round trips)", minimum=1
    )
    jit_compile: str = _option(
        "auto", "XLA-compile each replica's forward and backward pass; auto = on when a GPU is visible "
        "(on CPU it measured slower)", choices=("auto", "on", "off"),
    )
    mixed_precision: str = _option(
        "none", "compute in 16 bits with float32 weights and loss (bfloat16; or float16, with loss "
        "scaling); for GPUs and TPUs", choices=("none", "bfloat16", "float16"),
    )
    export_dir: str = _option("saved_models", "export root: <export-dir>/{decoder,vae}/<version>/")
    run_dir: str = _option("runs/default", "folder for config.json, metrics.json and sample grids")
    sample_every: int = _option(5, "write a sample grid every N epochs (0: never)", minimum=0)
    backup_every_steps: int = _option(
        0, "back up the run every N steps as well as after every epoch (0: after epochs only)", minimum=0
    )
    restart: bool = _option(False, "discard the run's backups and start over instead of resuming")
    gpu_memory_growth: bool = _option(
        True, "take GPU memory as needed rather than all at the start, so processes can share a GPU"
    )
    deterministic: bool = _option(
        False, "bitwise-repeatable GPU runs (TensorFlow op determinism; some GPU ops are slower)"
    )
    check_numerics: bool = _option(False, "find the op that produces a NaN or Inf (slow)")
    tensorboard: bool = _option(
        False, "write TensorBoard scalars every epoch, and images with the sample grids, to "
        "<run-dir>/tensorboard"
    )
    progress: bool = _option(True, "show a progress bar")

    # Options that may change between a run and its resumption; any other change means another run.
    RESUMABLE = frozenset({"epochs", "progress", "sample_every", "backup_every_steps", "export_dir",
                           "steps_per_execution", "check_numerics", "restart", "strategy", "tensorboard",
                           "jit_compile", "gpu_memory_growth", "deterministic", "skip_bad_pictures"})

    def validate(self):
        if not self.learning_rate > 0:
            raise UserError(f"--learning-rate must be positive; got {self.learning_rate}.")
        super().validate()
        for index, name in enumerate(("train_split", "val_split")):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.default_split(index))

    @classmethod
    def in_options(cls, message):
        # The library's `classes` are the data's under --conditional, and None without it.
        return super().in_options(message.replace("classes=None", "conditional=False")
                                  .replace("`classes`", "`conditional`"))

    def check_resumable_from(self, saved):
        """Raises a `UserError` if the run saved with options `saved` (a dict) is another run."""
        current = json.loads(json.dumps(self.to_dict()))  # tuples as lists, as they were saved
        changed = sorted(k for k, v in saved.items() if k not in self.RESUMABLE and current.get(k, v) != v)
        if changed:
            shown = ", ".join(f"--{k.replace('_', '-')} {_shown(saved[k])} -> {_shown(current[k])}"
                              for k in changed)
            raise UserError(
                f"{self.run_dir} holds a run with other options ({shown}). Resume it with its own "
                "options, start it over with --restart, or choose another --run-dir."
            )


@dataclasses.dataclass(frozen=True)
class SampleConfig(_Config):
    """Draw images from an exported decoder SavedModel and write them as a PNG grid."""

    model_dir: str = _option("saved_models/decoder", "folder holding numbered decoder versions")
    version: int | None = _option(None, "decoder version to use (default: the latest)", minimum=1)
    n: int = _option(64, "number of images (of each class asked for, for a class-conditional model)",
                     minimum=1)
    label: str | None = _option(
        None, "class-conditional models: the class to draw, by index or name, or 'all' for one row per "
        "class (the default for them)"
    )
    seed: int = _option(0, "seed for the latent draws", minimum=0)
    out: str = _option("samples.png", "PNG file to write")
    server: str | None = _option(
        None, "draw from the 'decoder' model of this TensorFlow Serving REST API (e.g. "
        "http://localhost:8501) instead of --model-dir"
    )

    def validate(self):
        if self.server is not None and not self.server.startswith(("http://", "https://")):
            raise UserError(f"--server must be a URL such as http://localhost:8501; got {self.server!r}.")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(_DataConfig):
    """Evaluate an exported VAE: negative ELBO, importance-weighted NLL, pictures."""

    export_dir: str = _option("saved_models", "export root holding vae/<version>/")
    version: int | None = _option(
        None, "version to evaluate (default: the latest)", minimum=1
    )
    split: str | None = _option(
        None, "split to evaluate, TFDS slicing syntax (e.g. 'test[8000:]'); default 'test', or "
        "'train[90%:]' of an --image-dir"
    )
    k: int = _option(1000, "importance samples per image for the NLL estimate", minimum=1)
    batch_size: int = _option(100, "images per step", minimum=1)
    seed: int = _option(0, "seed for the latent draws, dynamic binarization and prior samples", minimum=0)
    binarize: str = _option(
        "none",
        "pixels: none = grey levels in [0, 1]; static = one fixed Bernoulli draw per image; "
        "dynamic = a Bernoulli draw that depends on --seed",
        choices=("none", "static", "dynamic"),
    )
    out_dir: str = _option("evaluation", "folder for evaluation.json and the pictures")
    pictures: bool = _option(True, "write the pictures (PNG) as well as the numbers")

    def validate(self):
        super().validate()
        if self.split is None:
            object.__setattr__(self, "split", self.default_split(1))



@dataclasses.dataclass(frozen=True)
class ExploreConfig(_DataConfig):
    """Serve a page to explore an exported VAE: samples, the latent map, traversals, interpolations."""

    export_dir: str = _option("saved_models", "export root holding vae/<version>/ (with --server: for facts)")
    version: int | None = _option(None, "version (default: the latest, or the one served now)", minimum=1)
    server: str | None = _option(None, "relay to the 'vae' model of this TensorFlow Serving REST API (e.g. "
                                 "http://localhost:8501), pinned to one version, instead of --export-dir")
    split: str | None = _option(None, "split whose posterior means make the map (default: 'test', or "
                                "'train[90%:]' of an --image-dir)")
    map_points: int = _option(2000, "images of --split on the map (its first ones)", minimum=1)
    host: str = _option("127.0.0.1", "interface to listen on; any but the loopback opens the page, without "
                        "authentication, to the network")
    port: int = _option(8600, "port to listen on (0: any free one)", minimum=0)
    max_samples: int = _option(256, "the largest sample grid one request may ask for", minimum=1)
    max_steps: int = _option(64, "the most points one interpolation may ask for", minimum=2)
    max_upload_bytes: int = _option(2_000_000, "the largest request body (an uploaded picture)", minimum=1024)

    def validate(self):
        super().validate()
        SampleConfig.validate(self)  # the same --server check
