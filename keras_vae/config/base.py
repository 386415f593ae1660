"""What the command configs share: option fields, validation, the parser, JSON, and the data options.

A config rejects unknown keys, values of the wrong type and values out of range with a `UserError`, so
a typo never silently falls back to a default.
"""

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path

from keras_vae.errors import UserError
from keras_vae.options import as_options


def option(default, help, choices=None, minimum=None, metavar=None):
    """A dataclass field with the metadata the argument parser and the validator read."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def value_type(field):
    """The plain type of a field (`str` for `str | None`, `tuple` for `tuple[int, int] | None`)."""
    kind = field.type
    if isinstance(kind, types.UnionType):
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    return typing.get_origin(kind) or kind


def check_pair(flag, value, minimum):
    """A two-number option (e.g. --image-size HEIGHT WIDTH) as a tuple; JSON gives it as a list."""
    if isinstance(value, list):
        value = tuple(value)
    if not (isinstance(value, tuple) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise UserError(f"{flag} takes two whole numbers; got {value!r}.")
    if minimum is not None and min(value) < minimum:
        raise UserError(f"{flag} must be at least {minimum}; got {' '.join(map(str, value))}.")
    return value


def shown(value):
    """An option's value as it is written on the command line."""
    return " ".join(map(str, value)) if isinstance(value, list) else value


class Config:
    """Validation, parsing and JSON shared by the command configs."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flag = "--" + field.name.replace("_", "-")
            kind = value_type(field)
            if value is None and isinstance(field.type, types.UnionType):
                continue
            if kind is tuple:
                object.__setattr__(self, field.name, check_pair(flag, value, field.metadata.get("minimum")))
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
            kind = value_type(field)
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
class DataConfig(Config):
    """The data options train.py and evaluate.py share (see keras_vae.data.open_split)."""

    dataset: str = option("mnist", "TensorFlow Datasets image data set (mnist, fashion_mnist, ...)")
    data_dir: str | None = option(
        None, "read IDX files (train-images-idx3-ubyte[.gz], t10k-...) from this folder instead of TFDS"
    )
    image_dir: str | None = option(None, IMAGE_DIR_HELP)
    image_size: tuple[int, int] | None = option(None, IMAGE_SIZE_HELP, minimum=1,
                                                metavar=("HEIGHT", "WIDTH"))
    grayscale: bool = option(False, GRAYSCALE_HELP)
    stream: str = option("auto", STREAM_HELP, choices=("auto", "on", "off"))

    def validate(self):
        if self.image_dir is not None and self.data_dir is not None:
            raise UserError("Give --image-dir (pictures) or --data-dir (IDX files), not both.")
        if self.data_dir is not None and (self.image_size or self.grayscale):
            raise UserError("--image-size and --grayscale apply to --image-dir and TFDS data sets, not to "
                            "IDX files.")

    def default_split(self, which):
        """The default training (0) or validation (1) split of the data: see DEFAULT_SPLITS."""
        return DEFAULT_SPLITS["folder" if self.image_dir is not None else "files"][which]
