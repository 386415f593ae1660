"""The model behind the page: an exported version loaded here, or a version served by TensorFlow Serving.

Both answer in NumPy float32 and raise `ApiError` for what the page asks wrongly (400) or cannot get
(502), so the page's server treats them alike. A served model is pinned to one version for the whole
life of the page: the map, the traversals and the interpolations all come from one training.
"""

import numpy as np
import tensorflow as tf

from keras_vae.errors import ServingError, UserError
from keras_vae.serving.clients import RestClient, trim_message
from keras_vae.serving.exported import ExportedVAE, read_json, version_dir
from keras_vae.serving.sample import served_classes
from keras_vae.serving.sessions import PinnedSession, VersionGone, highest_available
from keras_vae.serving.signatures import DECODE, ENCODE, INTERPOLATE, SAMPLE

SERVABLE = "vae"
# What the facts show of an export's config.json.
CONFIG_FACTS = ("arch", "latent_dim", "hidden_dim", "likelihood", "beta", "dataset", "epochs", "binarize")


class ApiError(Exception):
    """A request the page's server answers with `status` and {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def version_facts(path):
    """The facts of a version folder: its training options and its last epoch's validation metrics."""
    config = read_json(path / "config.json") or {}
    final = (read_json(path / "metrics.json") or {}).get("final") or {}
    return {"options": {key: config[key] for key in CONFIG_FACTS if key in config},
            "validation": {key.removeprefix("val_"): value for key, value in final.items()
                           if key.startswith("val_")}}


def _labels(label, count):
    """{"labels": int32 [count] of one class} for a conditional request, {} for an unconditional one."""
    return {} if label is None else {"labels": np.full([count], label, np.int32)}


class LocalModel:
    """An exported version loaded in this process (`ExportedVAE`), exactly as deployed.

    Args:
        export_dir: The export root.
        version: The version (default: the latest).

    Raises:
        UserError: if there is no such version or it is damaged.
    """

    def __init__(self, export_dir, version=None):
        self.model = ExportedVAE(export_dir, version)
        self.version, self.image_shape = self.model.version, tuple(self.model.image_shape)
        self.latent_dim = int(self.model.latent_dim)
        self.classes = self.model.classes
        self.source = str(self.model.path.parent.parent)
        self.facts = version_facts(self.model.path)

    def _run(self, method, *args, labels=None):
        """`method(*args)`, with `labels` (one class for all examples, or one per example) if given."""
        try:
            return np.asarray(method(*args, **({} if labels is None else {"labels": labels})), np.float32)
        except tf.errors.InvalidArgumentError as error:
            raise ApiError(400, trim_message(error.message))

    def sample(self, n, seed, label=None):
        return self._run(self.model.sample, n, seed, labels=label)

    def encode(self, images, labels=None):
        return self._run(lambda *args, **label: self.model.encode(*args, **label)[0], images, labels=labels)

    def decode(self, z, label=None):
        return self._run(self.model.decode, z, labels=label)

    def interpolate(self, images_a, images_b, steps, label=None):
        return self._run(self.model.interpolate, images_a, images_b, steps, labels=label)[0]


class ServedModel:
    """The `vae` model of a TensorFlow Serving REST API, every call pinned to one version.

    The class names come from the version's `class_names` signature (None when it has none), the image
    shape and latent size from one `sample` and one `encode` call; the training facts from the version's
    folder in `export_dir`, when this machine holds it (the folder the server serves from).

    Args:
        url: The server's REST address.
        version: The version to pin (default: the one served now).
        export_dir: An export root to read the version's config.json and metrics.json from, if there.

    Raises:
        ServingError: if the server cannot be reached, does not serve the version, or refuses.
    """

    def __init__(self, url, version=None, export_dir=None):
        client = RestClient(url)
        if version is None:
            version = highest_available(SERVABLE, client.status(SERVABLE))
        else:
            client.status(SERVABLE, version)  # a clear error now, not at the first slider move
        self.session = PinnedSession(client, SERVABLE, version)
        self.version, self.source = version, client.model_url(SERVABLE, version)
        self.classes = served_classes(self.session)
        first = None if self.classes is None else 0
        probe = self.sample(1, 0, first)
        self.image_shape = tuple(probe.shape[1:])
        self.latent_dim = int(self.encode(probe, None if first is None else [first]).shape[-1])
        try:
            self.facts = version_facts(version_dir(f"{export_dir}/{SERVABLE}", version))
        except UserError:
            self.facts = {"options": {}, "validation": {},
                          "note": f"{export_dir}/{SERVABLE}/{version} is not on this machine: the server "
                                  "does not send a version's training options or metrics."}

    def _predict(self, signature, inputs, output):
        try:
            outputs = self.session.predict(inputs, signature.key(SERVABLE))
        except VersionGone as error:
            raise ApiError(502, f"{error} Restart the explorer to explore the version served now.")
        except ServingError as error:
            # The server's 4xx answers are about the request; anything else is the server's trouble.
            bad_request = isinstance(error.status, int) and 400 <= error.status < 500
            raise ApiError(400 if bad_request else 502, str(error))
        return np.asarray(outputs[output] if isinstance(outputs, dict) else outputs, np.float32)

    # A conditional export's signatures take int32 `labels`: one per example, and for `sample` the
    # classes asked (n images of each).
    def sample(self, n, seed, label=None):
        return self._predict(SAMPLE, {"n": n, "seed": seed, **_labels(label, 1)}, SAMPLE.output())

    def encode(self, images, labels=None):
        extra = {} if labels is None else {"labels": np.asarray(labels, np.int32)}
        return self._predict(ENCODE, {"images": images, **extra}, ENCODE.output())

    def decode(self, z, label=None):
        return self._predict(DECODE, {"z": z, **_labels(label, len(z))}, DECODE.output())

    def interpolate(self, images_a, images_b, steps, label=None):
        inputs = {"images_a": images_a, "images_b": images_b, "steps": steps, **_labels(label, len(images_a))}
        return self._predict(INTERPOLATE, inputs, INTERPOLATE.output())[0]
