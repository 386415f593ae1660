"""The serving signatures of the exports: one table of names, servables, inputs, outputs, dtypes, shapes.

The table is `SIGNATURES` below (docs/serving.md shows it to users; a test checks the two agree).
The exports (`keras_vae.serving.functions`), the clients, `sample.py`, `evaluate.py` and the serving
benchmark read this table; a test checks every exported SavedModel against it. Shapes name their
sizes: "batch" (any), "steps" (any, a request's `steps`), "asked" (any: the classes a request asks
for), "latent" (the latent size), "image" (height, width, channels), "classes" (the number of
classes), or a number. An input marked `conditional` is one only a class-conditional model's exports
take (its `labels`), and a signature marked `conditional` only they have; the other exports are as if
those were not in the table. This module needs neither TensorFlow nor NumPy, so REST
clients can read it anywhere.

Two servables are published, with one version number: `decoder` (generation only, what `sample.py`
serves) and `vae` (the whole model: every signature, so one answer, or a session pinned to one version,
always comes from one training). A signature is served under its name by the servables in `models`,
and as `serving_default` by those in `default_of` (the decoder's four signatures are as they always
were: its `decode` is only its `serving_default`).
"""

import dataclasses

# The largest `n` the `sample` signatures accept, so one request cannot exhaust a server's memory.
MAX_SAMPLES = 10_000
# The most points `interpolate` decodes per pair of images, for the same reason.
MAX_STEPS = 1_000
DEFAULT_KEY = "serving_default"


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output of a signature: its name, dtype (a NumPy/TensorFlow dtype name) and shape."""

    name: str
    dtype: str
    shape: tuple
    conditional: bool = False  # an input of class-conditional models' exports only

    def dims(self, latent_dim, image_shape, classes=None):
        """The shape with its sizes resolved; None for "batch", "steps" and "asked"."""
        sizes = {"batch": [None], "steps": [None], "asked": [None], "latent": [latent_dim],
                 "image": list(image_shape), "classes": [classes]}
        return [size for part in self.shape for size in sizes.get(part, [part])]


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature of the exports, and the servables that hold it."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    models: tuple[str, ...]  # served under `name` by these
    default_of: tuple[str, ...] = ()  # served as `serving_default` by these
    conditional: bool = False  # only in the exports of class-conditional models

    def key(self, model):
        """The signature's name in `model`'s SavedModel (`name`, or `serving_default`).

        Raises:
            KeyError: if `model` does not hold it.
        """
        if model in self.models:
            return self.name
        if model in self.default_of:
            return DEFAULT_KEY
        raise KeyError(f"The {model} servable has no {self.name} signature.")

    @property
    def batchable(self):
        """Whether every input and output has a batch dimension first, as TensorFlow Serving's
        batching needs (it splits the outputs of a merged run along it)."""
        return all(tensor.shape[:1] == ("batch",) for tensor in self.inputs + self.outputs)

    def inputs_of(self, conditional):
        """The inputs of the signature in the export of a class-conditional model or of another."""
        return tuple(tensor for tensor in self.inputs if conditional or not tensor.conditional)

    def input_names(self, conditional=True):
        return [tensor.name for tensor in self.inputs_of(conditional)]

    def output_names(self):
        return [tensor.name for tensor in self.outputs]

    def output(self, index=0):
        """The name of an output (the first by default)."""
        return self.outputs[index].name


Z = Tensor("z", "float32", ("batch", "latent"))
IMAGES = Tensor("images", "float32", ("batch", "image"))
N = Tensor("n", "int32", ())
SEED = Tensor("seed", "int64", ())
STEPS = Tensor("steps", "int32", ())
MEAN = Tensor("mean", "float32", ("batch", "latent"))
LOG_VAR = Tensor("log_var", "float32", ("batch", "latent"))
IMAGES_A, IMAGES_B, IMAGES_C = (Tensor(f"images_{x}", "float32", ("batch", "image")) for x in "abc")
# The class of every example, for a class-conditional model (last, after the inputs of every model).
LABELS = Tensor("labels", "int32", ("batch",), conditional=True)
# The classes a sampler is asked for: n images of each, in this order (one row each in `sample_png`).
ASKED = Tensor("labels", "int32", ("asked",), conditional=True)
BOTH = ("decoder", "vae")

DECODE = Signature("decode", (Z, LABELS), (IMAGES,), ("vae",), default_of=("decoder",))
LOGITS = Signature("logits", (Z, LABELS), (Tensor("logits", "float32", ("batch", "image")),), BOTH)
SAMPLE = Signature("sample", (N, SEED, ASKED), (IMAGES,), BOTH)
# A scalar string whose name ends in `_bytes`, so that TensorFlow Serving's REST API sends it base64.
SAMPLE_PNG = Signature("sample_png", (N, SEED, ASKED), (Tensor("png_bytes", "string", ()),), BOTH)
ENCODE = Signature("encode", (IMAGES, LABELS), (MEAN, LOG_VAR), ("vae",), default_of=("vae",))
RECONSTRUCT = Signature("reconstruct", (IMAGES, LABELS), (IMAGES,), ("vae",))
INTERPOLATE = Signature("interpolate", (IMAGES_A, IMAGES_B, STEPS, LABELS),
                        (Tensor("images", "float32", ("batch", "steps", "image")),), ("vae",))
ANALOGY = Signature("analogy", (IMAGES_A, IMAGES_B, IMAGES_C, LABELS), (IMAGES,), ("vae",))
LOG_PRIOR = Signature("log_prior", (Z, LABELS), (Tensor("log_prior", "float32", ("batch",)),), BOTH)
# What a client reads the class names by: those of `labels`, and all of them in index order.
CLASS_NAMES = Signature("class_names", (Tensor("labels", "int32", ("asked",)),),
                        (Tensor("names", "string", ("asked",)), Tensor("classes", "string", ("classes",))),
                        BOTH, conditional=True)

SIGNATURES = (DECODE, LOGITS, SAMPLE, SAMPLE_PNG, ENCODE, RECONSTRUCT, INTERPOLATE, ANALOGY, LOG_PRIOR,
              CLASS_NAMES)
# The servables of a version, in the order their folders are renamed into place.
MODELS = ("decoder", "vae")


def of_model(model, conditional=False):
    """The signatures of `model`, {name in its SavedModel: Signature}, `serving_default` first.

    Args:
        model: "decoder" or "vae".
        conditional: Of the export of a class-conditional model (with the `conditional` signatures).
    """
    (default,) = [signature for signature in SIGNATURES if model in signature.default_of]
    return {DEFAULT_KEY: default, **{s.name: s for s in SIGNATURES
                                     if model in s.models and (conditional or not s.conditional)}}
