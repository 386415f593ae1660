"""Drawing images from an exported decoder, local or served (what `sample.py` runs).

Both ways run the decoder's `sample_png` signature and write the PNG it returns, so the same seed gives
the same file from a local SavedModel and from any TensorFlow Serving server that serves the same version.
"""

import tensorflow as tf

from keras_vae.errors import UserError
from keras_vae.images import write_png
from keras_vae.serving.clients import RestClient, trim_message
from keras_vae.serving.exported import call, load_version
from keras_vae.serving.signatures import SAMPLE_PNG

# sample.py draws from the decoder: the servable a generation-only deployment has.
SERVABLE = "decoder"


def sample_local(model_dir, n, seed, version=None):
    """Runs the `sample_png` signature of a decoder version (default: the latest) in this process.

    Returns:
        (PNG bytes of the grid of n images, the version folder).

    Raises:
        UserError: if there is no such version, it is damaged, has no `sample_png` signature, or
            refuses the request.
    """
    key = SAMPLE_PNG.key(SERVABLE)
    loaded, path = load_version(model_dir, version, require=(key,))
    try:
        outputs = call(SAMPLE_PNG, loaded.signatures[key], n=n, seed=seed)
    except tf.errors.InvalidArgumentError as error:
        raise UserError(f"{path} refused the request: {trim_message(error.message)}")
    return outputs[SAMPLE_PNG.output()].numpy(), path


def sample_served(url, n, seed, version=None):
    """Runs the `sample_png` signature of the `decoder` servable of the TensorFlow Serving REST API at `url`.

    Returns:
        (PNG bytes of the grid of n images, the model URL).

    Raises:
        ServingError: if the server cannot be reached or refuses the request.
    """
    client = RestClient(url)
    png = client.predict(SERVABLE, {"n": n, "seed": seed}, signature_name=SAMPLE_PNG.key(SERVABLE),
                         version=version)
    return png, client.model_url(SERVABLE, version)


def sample(config):
    """Draws `config.n` images from z ~ N(0, I) and writes them to `config.out` as a PNG grid."""
    if config.server:
        png, source = sample_served(config.server, config.n, config.seed, config.version)
    else:
        png, source = sample_local(config.model_dir, config.n, config.seed, config.version)
    write_png(png, config.out)
    print(f"Wrote {config.n} samples from {source} to {config.out}")
