"""keras_vae: a variational autoencoder for TensorFlow 2 / Keras 3 that is correct under tf.distribute."""

__version__ = "0.1.0"
