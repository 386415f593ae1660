"""The explorer's JSON API (docs/explore.md): each request checked, answered by the model, never fatal.

Images travel as {"shape": [n, height, width, channels], "pixels": base64 of the uint8 pixels, row
major}: the page paints them into a canvas as they are, with no PNG to encode or decode per slider move.
"""

import base64
import binascii
import math

import numpy as np
import tensorflow as tf

from keras_vae.data.decode import Decoding, decode, diagnose
from keras_vae.explore.atlas import LatentMap
from keras_vae.explore.backends import ApiError
from keras_vae.images import to_uint8, to_unit_interval

# The magic numbers of the pictures an upload may be (PNG, JPEG).
PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MAX_OFFSET = 10.0  # slider offsets beyond this many standard deviations decode nothing meaningful


def pixels(images):
    """Images in [0, 1] [n, H, W, C] as the API sends them."""
    array = to_uint8(images).numpy()
    return {"shape": list(array.shape), "pixels": base64.b64encode(array.tobytes()).decode()}


def _whole(body, name, low, high, default=None):
    """body[name], a whole number in [low, high] (or `default` when absent)."""
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}; got {value!r}.")
    return value


def _numbers(value, name, length=None, bound=None):
    """A list of finite numbers (of `length`, or at most `bound` in size each) as float64."""
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ApiError(400, f"{name} must be a list of finite numbers; got {str(value)[:80]}.")
    if length is not None and len(value) != length:
        raise ApiError(400, f"{name} must hold {length} numbers; got {len(value)}.")
    if bound is not None and any(abs(v) > bound for v in value):
        raise ApiError(400, f"{name} must lie within ±{bound}; got {value}.")
    return np.asarray(value, np.float64)


class Explorer:
    """Answers the API's requests for one model and one latent map.

    Args:
        model: A `LocalModel` or `ServedModel`.
        images, labels, classes: The split's images for the map (uint8), its labels and class names.
        split: The split's name, for the facts.
        max_samples, max_steps: The largest sample grid and interpolation a request may ask for.
    """

    def __init__(self, model, images, labels=None, classes=None, split=None, max_samples=256, max_steps=64):
        self.model, self.split = model, split
        self.max_samples, self.max_steps = max_samples, max_steps
        self.atlas = LatentMap(model, images, labels, classes)
        self.decoding = Decoding(*model.image_shape, resize=True, grayscale=model.image_shape[-1] == 1)
        self.routes = {("GET", "/api/facts"): self.facts, ("GET", "/api/map"): self.atlas.document,
                       ("POST", "/api/sample"): self.sample, ("POST", "/api/decode"): self.decode,
                       ("POST", "/api/encode"): self.encode, ("POST", "/api/traverse"): self.traverse,
                       ("POST", "/api/interpolate"): self.interpolate}

    def answer(self, method, path, body=None):
        """The (status, JSON document) of a request; `body` is the parsed JSON of a POST."""
        route = self.routes.get((method, path))
        if route is None:
            methods = sorted(m for m, p in self.routes if p == path)
            if methods:
                return 405, {"error": f"{path} takes {' or '.join(methods)}, not {method}."}
            known = sorted(f"{m} {p}" for m, p in self.routes)
            return 404, {"error": f"No {method} {path}; the API has {', '.join(known)}."}
        if method == "POST" and not isinstance(body, dict):
            return 400, {"error": f"POST {path} takes a JSON object; got {type(body).__name__}."}
        try:
            return 200, (route(body) if method == "POST" else route())
        except ApiError as error:
            return error.status, {"error": str(error)}

    def facts(self):
        model = self.model
        classes = None if model.classes is None else list(model.classes)
        return {"version": model.version, "source": model.source, "image_shape": list(model.image_shape),
                "latent_dim": model.latent_dim, "classes": classes, **model.facts,
                "map": {"split": self.split, "count": len(self.atlas.points)},
                "sliders": self.atlas.sliders,
                "limits": {"max_samples": self.max_samples, "max_steps": self.max_steps,
                           "images": len(self.atlas.images)}}

    def _label(self, body):
        """The class a request asks for: None for an unconditional model, else a class index."""
        classes = self.model.classes
        if classes is None:
            if body.get("label") is not None:
                raise ApiError(400, f"label={body['label']!r} given, but this model is not "
                                    "class-conditional.")
            return None
        return _whole(body, "label", 0, len(classes) - 1)

    def sample(self, body):
        n = _whole(body, "n", 1, self.max_samples)
        seed = _whole(body, "seed", 0, 2**31 - 1, default=0)
        return {"images": pixels(self.model.sample(n, seed, self._label(body)))}

    def _latent(self, body):
        """The latent a request names: "z" (a latent) or "point" (x, y on the map)."""
        if ("z" in body) == ("point" in body):
            raise ApiError(400, "Give z (a latent vector) or point (x, y on the map), one of them.")
        if "point" in body:
            return self.atlas.at(_numbers(body["point"], "point", 2, bound=1e6))
        return _numbers(body["z"], "z", self.model.latent_dim, bound=1e6).astype(np.float32)

    def decode(self, body):
        z = self._latent(body)
        return {"z": z.tolist(), "images": pixels(self.model.decode(z[None], self._label(body)))}

    def traverse(self, body):
        base = _numbers(body.get("z"), "z", self.model.latent_dim, bound=1e6)
        offsets = _numbers(body.get("offsets"), "offsets", bound=MAX_OFFSET)
        z = self.atlas.moved(base, body.get("basis", "pca"), offsets)
        return {"z": z.tolist(), "images": pixels(self.model.decode(z[None], self._label(body)))}

    def _image(self, reference, name):
        """(image in [0, 1] [1, H, W, C], its label or None) of {"index": i} or {"picture": base64}."""
        if not isinstance(reference, dict) or len(reference.keys() & {"index", "picture"}) != 1:
            raise ApiError(400, f"{name} must be {{\"index\": i}} (an image of the split) or {{\"picture\": "
                                "base64 of a PNG or JPEG file}.")
        if "index" in reference:
            index = _whole(reference, "index", 0, len(self.atlas.images) - 1)
            label = None if self.atlas.labels is None else int(self.atlas.labels[index])
            return to_unit_interval(self.atlas.images[index:index + 1]).numpy(), label
        try:
            contents = base64.b64decode(reference["picture"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ApiError(400, f"{name}.picture is not base64.")
        if not contents.startswith(PICTURE_MAGIC):
            raise ApiError(400, f"{name}.picture is not a PNG or JPEG picture.")
        problem = diagnose(contents, "the picture", self.decoding)
        if problem:
            raise ApiError(400, f"{name}.picture: {problem}")
        image = decode(tf.constant(contents), tf.constant("the picture"), self.decoding)
        return to_unit_interval(image[None]).numpy(), None

    def encode(self, body):
        image, label = self._image(body, "the request")
        if self.model.classes is None or label is None or "label" in body:
            label = self._label(body)  # an image of the split keeps its own class unless one is asked
        labels = None if label is None else np.asarray([label], np.int32)
        z = self.model.encode(image, labels)[0]
        return {"z": z.tolist(), "label": label, "image": pixels(image),
                "reconstruction": pixels(self.model.decode(z[None], label))}

    def interpolate(self, body):
        (image_a, _), (image_b, _) = self._image(body.get("a"), "a"), self._image(body.get("b"), "b")
        steps = _whole(body, "steps", 2, self.max_steps, default=8)
        return {"images": pixels(self.model.interpolate(image_a, image_b, steps, self._label(body)))}
