"""The serving signatures of the exports: one table of names, inputs, outputs, dtypes and shapes.

The table is `SIGNATURES` below (docs/serving.md shows it to users; a test checks the two agree).
The exports (`keras_vae.serving.functions`), the clients, `sample.py`, `evaluate.py` and the serving
benchmark read this table; a test checks every exported SavedModel against it. Shapes name their
sizes: "batch" (any), "latent" (the latent size), "image" (height, width, channels), or a number.
This module needs neither TensorFlow nor NumPy, so REST clients can read it anywhere.
"""

import dataclasses

# The largest `n` the `sample` signatures accept, so one request cannot exhaust a server's memory.
MAX_SAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output of a signature: its name, dtype (a NumPy/TensorFlow dtype name) and shape."""

    name: str
    dtype: str
    shape: tuple

    def dims(self, latent_dim, image_shape):
        """The shape with its sizes resolved; None for "batch"."""
        sizes = {"batch": [None], "latent": [latent_dim], "image": list(image_shape)}
        return [size for part in self.shape for size in sizes.get(part, [part])]


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature of an exported model."""

    model: str  # "decoder" or "encoder"
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

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

DECODE = Signature("decoder", "serving_default", (Z,), (IMAGES,))
LOGITS = Signature("decoder", "logits", (Z,), (Tensor("logits", "float32", ("batch", "image")),))
SAMPLE = Signature("decoder", "sample", (N, SEED), (IMAGES,))
# A scalar string whose name ends in `_bytes`, so that TensorFlow Serving's REST API sends it base64.
SAMPLE_PNG = Signature("decoder", "sample_png", (N, SEED), (Tensor("png_bytes", "string", ()),))
MEAN = Tensor("mean", "float32", ("batch", "latent"))
LOG_VAR = Tensor("log_var", "float32", ("batch", "latent"))
ENCODE = Signature("encoder", "serving_default", (IMAGES,), (MEAN, LOG_VAR))
RECONSTRUCT = Signature("encoder", "reconstruct", (IMAGES,), (IMAGES,))

SIGNATURES = (DECODE, LOGITS, SAMPLE, SAMPLE_PNG, ENCODE, RECONSTRUCT)
MODELS = ("decoder", "encoder")  # also the order in which a version's folders are renamed into place


def of_model(model):
    """The signatures of `model`, {name: Signature}, in the table's order."""
    return {signature.name: signature for signature in SIGNATURES if signature.model == model}
