"""Drawing images from an exported decoder, local or served (what `sample.py` runs).

Both ways run the decoder's `sample` signature, so the same seed gives the same images from a local
SavedModel and from any TensorFlow Serving server that serves the same version.
"""

import numpy as np
import tensorflow as tf

from keras_vae import export, plots, serving
from keras_vae.errors import UserError


def sample_local(model_dir, n, seed, version=None):
    """Runs the `sample` signature of a decoder version (default: the latest) in this process.

    Returns:
        (images float32 [n, H, W, C] in [0, 1], the version folder).

    Raises:
        UserError: if there is no such version, it has no `sample` signature, or it refuses the request.
    """
    path = export.version_dir(model_dir, version)
    signatures = export.load(path).signatures
    if "sample" not in signatures:
        raise UserError(f"{path} has no 'sample' signature: it was exported by an older keras_vae. "
                        "Export it again with `python train.py`.")
    try:
        images = signatures["sample"](n=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64))
    except tf.errors.InvalidArgumentError as error:
        raise UserError(f"{path} refused the request: {error.message.splitlines()[0]}")
    return images["images"].numpy(), path


def sample_served(url, n, seed, version=None):
    """Runs the `sample` signature of the `decoder` model of the TensorFlow Serving REST API at `url`.

    Returns:
        (images float32 [n, H, W, C] in [0, 1], the model URL).

    Raises:
        serving.ServingError: if the server cannot be reached or refuses the request.
    """
    client = serving.RestClient(url)
    images = client.predict("decoder", {"n": n, "seed": seed}, signature_name="sample", version=version)
    return np.asarray(images, np.float32), client.model_url("decoder", version)


def sample(config):
    """Draws `config.n` images from z ~ N(0, I) and writes them to `config.out` as a grid.

    Returns:
        The images, float32 [n, H, W, C] in [0, 1].
    """
    if config.server:
        images, source = sample_served(config.server, config.n, config.seed, config.version)
    else:
        images, source = sample_local(config.model_dir, config.n, config.seed, config.version)
    plots.save_image_grid(images, config.out)
    print(f"Wrote {config.n} samples from {source} to {config.out}")
    return images
