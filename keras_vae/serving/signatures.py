"""The serving signatures of the exports: one table of names, servables, inputs, outputs, dtypes, shapes.

The table is `SIGNATURES` below (docs/serving.md shows it to users; a test checks the two agree).
The exports (`keras_vae.serving.functions`), the clients, `sample.py`, `evaluate.py` and the serving
benchmark read this table; a test checks every exported SavedModel against it. Shapes name their
sizes: "batch" (any), "steps" (any, a request's `steps`), "latent" (the latent size), "image"
(height, width, channels), or a number. This module needs neither TensorFlow nor NumPy, so REST
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

    def dims(self, latent_dim, image_shape):
        """The shape with its sizes resolved; None for "batch" and "steps"."""
        sizes = {"batch": [None], "steps": [None], "latent": [latent_dim], "image": list(image_shape)}
        return [size for part in self.shape for size in sizes.get(part, [part])]


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature of the exports, and the servables that hold it."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    models: tuple[str, ...]  # served under `name` by these
    default_of: tuple[str, ...] = ()  # served as `serving_default` by these

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
        """Whether every input has a batch dimension first, as TensorFlow Serving's batching needs."""
        return all(tensor.shape[:1] == ("batch",) for tensor in self.inputs)

    def input_names(self):
        return [tensor.name for tensor in self.inputs]

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
BOTH = ("decoder", "vae")

DECODE = Signature("decode", (Z,), (IMAGES,), ("vae",), default_of=("decoder",))
LOGITS = Signature("logits", (Z,), (Tensor("logits", "float32", ("batch", "image")),), BOTH)
SAMPLE = Signature("sample", (N, SEED), (IMAGES,), BOTH)
# A scalar string whose name ends in `_bytes`, so that TensorFlow Serving's REST API sends it base64.
SAMPLE_PNG = Signature("sample_png", (N, SEED), (Tensor("png_bytes", "string", ()),), BOTH)
ENCODE = Signature("encode", (IMAGES,), (MEAN, LOG_VAR), ("vae",), default_of=("vae",))
RECONSTRUCT = Signature("reconstruct", (IMAGES,), (IMAGES,), ("vae",))
INTERPOLATE = Signature("interpolate", (IMAGES_A, IMAGES_B, STEPS),
                        (Tensor("images", "float32", ("batch", "steps", "image")),), ("vae",))
ANALOGY = Signature("analogy", (IMAGES_A, IMAGES_B, IMAGES_C), (IMAGES,), ("vae",))

SIGNATURES = (DECODE, LOGITS, SAMPLE, SAMPLE_PNG, ENCODE, RECONSTRUCT, INTERPOLATE, ANALOGY)
# The servables of a version, in the order their folders are renamed into place.
MODELS = ("decoder", "vae")


def of_model(model):
    """The signatures of `model`, {name in its SavedModel: Signature}, `serving_default` first."""
    (default,) = [signature for signature in SIGNATURES if model in signature.default_of]
    return {DEFAULT_KEY: default, **{s.name: s for s in SIGNATURES if model in s.models}}
