"""The model: networks, the reparameterisation layer, per-example losses, the VAE and its `.keras` files."""

from keras_vae.models.base import Autoencoder
from keras_vae.models.inference import RANDOM_ALGORITHM
from keras_vae.models.layers import Sampling
from keras_vae.models.networks import ARCHITECTURES, build_decoder, build_encoder, conv_filters
from keras_vae.models.saving import load_vae
from keras_vae.models.vae import VAE, build_vae

__all__ = ["ARCHITECTURES", "RANDOM_ALGORITHM", "VAE", "Autoencoder", "Sampling", "build_decoder",
           "build_encoder", "build_vae", "conv_filters", "load_vae"]
