"""Drawing images from an exported decoder SavedModel (what `sample.py` runs)."""

import numpy as np
import tensorflow as tf

from keras_vae import export, plots


def load_decoder(model_dir, version=None):
    """Loads the `serving_default` function of a decoder version (default: the latest).

    Returns:
        (function, latent_dim, path): the signature takes `z` and returns {"images": ...}.
    """
    path = export.version_dir(model_dir, version)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    latent_dim = serve.structured_input_signature[1]["z"].shape[-1]
    return serve, latent_dim, path


def sample(config):
    """Draws `config.n` images from N(0, I) latents and writes them to `config.out` as a grid.

    Returns:
        The images, float32 [n, H, W, C] in [0, 1].
    """
    serve, latent_dim, path = load_decoder(config.model_dir, config.version)
    z = np.random.default_rng(config.seed).standard_normal((config.n, latent_dim)).astype(np.float32)
    images = serve(z=tf.constant(z))["images"].numpy()
    plots.save_image_grid(images, config.out)
    print(f"Wrote {config.n} samples from {path} to {config.out}")
    return images
