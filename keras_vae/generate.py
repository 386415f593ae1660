"""Drawing images from an exported decoder, local or served (what `sample.py` runs).

Both ways run the decoder's `sample_png` signature and write the PNG it returns, so the same seed gives
the same file from a local SavedModel and from any TensorFlow Serving server that serves the same version.
"""

import tensorflow as tf

from keras_vae import export, plots, serving
from keras_vae.errors import UserError

SIGNATURE = "sample_png"


def sample_local(model_dir, n, seed, version=None):
    """Runs the `sample_png` signature of a decoder version (default: the latest) in this process.

    Returns:
        (PNG bytes of the grid of n images, the version folder).

    Raises:
        UserError: if there is no such version, it is damaged, has no `sample_png` signature, or
            refuses the request.
    """
    path = export.version_dir(model_dir, version)
    signatures = export.load(path).signatures
    if SIGNATURE not in signatures:
        raise UserError(f"{path} has no '{SIGNATURE}' signature: it was exported by an older keras_vae. "
                        "Export it again with `python train.py`.")
    try:
        outputs = signatures[SIGNATURE](n=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64))
    except tf.errors.InvalidArgumentError as error:
        raise UserError(f"{path} refused the request: {serving.trim_message(error.message)}")
    return outputs["png_bytes"].numpy(), path


def sample_served(url, n, seed, version=None):
    """Runs the `sample_png` signature of the `decoder` model of the TensorFlow Serving REST API at `url`.

    Returns:
        (PNG bytes of the grid of n images, the model URL).

    Raises:
        serving.ServingError: if the server cannot be reached or refuses the request.
    """
    client = serving.RestClient(url)
    png = client.predict("decoder", {"n": n, "seed": seed}, signature_name=SIGNATURE, version=version)
    return png, client.model_url("decoder", version)


def sample(config):
    """Draws `config.n` images from z ~ N(0, I) and writes them to `config.out` as a PNG grid."""
    if config.server:
        png, source = sample_served(config.server, config.n, config.seed, config.version)
    else:
        png, source = sample_local(config.model_dir, config.n, config.seed, config.version)
    plots.write_png(png, config.out)
    print(f"Wrote {config.n} samples from {source} to {config.out}")
