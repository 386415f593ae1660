"""The latent-space explorer: a page over an exported or served VAE, its JSON API and its server."""

from keras_vae.explore.api import Explorer
from keras_vae.explore.backends import ApiError, LocalModel, ServedModel
from keras_vae.explore.run import build_explorer, explore
from keras_vae.explore.server import make_server

__all__ = ["ApiError", "Explorer", "LocalModel", "ServedModel", "build_explorer", "explore", "make_server"]
