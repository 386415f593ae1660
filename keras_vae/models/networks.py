"""The encoder and decoder networks: an MLP, or convolutions that halve the image in stages."""

import keras
from keras import layers

from keras_vae.errors import UserError

ARCHITECTURES = ("mlp", "conv")
# Filters of the stride-2 stages, doubling from the first up to CONV_MAX_FILTERS.
CONV_FIRST_FILTERS = 32
CONV_MAX_FILTERS = 256
# Stages halve the image until one more would leave a side under CONV_MIN_SIDE or of odd length.
CONV_MIN_SIDE = 4
# 4x4 kernels for the stride-2 layers: with 3x3, transposed convolutions of stride 2 overlap unevenly
# (checkerboard artefacts); 4x4 also validated better (docs/performance.md, "Architecture choices").
CONV_KERNEL = 4


def conv_filters(image_shape):
    """The filters of the conv encoder's stride-2 stages for images of `image_shape`, one per stage.

    The number of stages is the largest s with height and width multiples of 2**s and their smaller
    side / 2**s at least CONV_MIN_SIDE: 28x28 -> 2 stages (7x7 at the end), 32x32 -> 3 (4x4),
    64x64 -> 4 (4x4), 96x96 -> 4 (6x6). Filters double from CONV_FIRST_FILTERS: 28x28 -> (32, 64).
    """
    height, width = image_shape[:2]
    stages = 0
    while (height % 2 ** (stages + 1) == 0 and width % 2 ** (stages + 1) == 0
           and min(height, width) // 2 ** (stages + 1) >= CONV_MIN_SIDE):
        stages += 1
    return tuple(min(CONV_FIRST_FILTERS * 2**stage, CONV_MAX_FILTERS) for stage in range(stages))


def check_image_shape(arch, image_shape):
    """Raises a `UserError` when `arch` cannot take images of `image_shape` (height, width, channels)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"arch must be one of {', '.join(ARCHITECTURES)}. Received: arch={arch!r}.")
    if len(image_shape) != 3:
        raise UserError("image_shape must be (height, width, channels). "
                        f"Received: image_shape={tuple(image_shape)}.")
    if arch == "conv" and not conv_filters(image_shape):
        raise UserError(
            f"arch='conv' halves the image size at least once, to sides of {CONV_MIN_SIDE} or more, so "
            f"height and width must be even and at least {2 * CONV_MIN_SIDE}. Received: "
            f"image_shape={tuple(image_shape)}. Resize the images (image_size=(HEIGHT, WIDTH) when "
            "reading them), or use arch='mlp', which takes any size."
        )


def _one_hot_input(classes):
    """The one-hot labels input of a class-conditional network, or None."""
    return None if classes is None else keras.Input(shape=(classes,), name="one_hot_labels")


def build_encoder(arch, image_shape, latent_dim, hidden_dim, classes=None):
    """Returns a functional model mapping images to (mean, log_var) of q(z | x).

    With `classes` (a number), the model maps [images, one-hot labels [batch, classes]] to q(z | x, y):
    the labels join the flattened image (after the convolutions) at the input of the hidden layer.
    """
    check_image_shape(arch, image_shape)
    images = keras.Input(shape=tuple(image_shape), name="images")
    labels = _one_hot_input(classes)
    x = images
    if arch == "conv":
        for filters in conv_filters(image_shape):
            x = layers.Conv2D(filters, CONV_KERNEL, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    if labels is not None:
        x = layers.Concatenate()([x, labels])
    x = layers.Dense(hidden_dim, activation="relu")(x)
    # Heads in float32 under mixed precision: the loss and the sampling need the precision.
    mean = layers.Dense(latent_dim, name="mean", dtype="float32")(x)
    log_var = layers.Dense(latent_dim, name="log_var", dtype="float32")(x)
    inputs = images if labels is None else [images, labels]
    return keras.Model(inputs, [mean, log_var], name="encoder")


def build_decoder(arch, image_shape, latent_dim, hidden_dim, classes=None):
    """Returns a functional model mapping latents to per-pixel logits of shape `image_shape`.

    With `classes` (a number), the model maps [z, one-hot labels [batch, classes]] to p(x | z, y): the
    labels join z at the input of the first layer.
    """
    check_image_shape(arch, image_shape)
    height, width, channels = image_shape
    z = keras.Input(shape=(latent_dim,), name="z")
    labels = _one_hot_input(classes)
    x = z if labels is None else layers.Concatenate()([z, labels])
    x = layers.Dense(hidden_dim, activation="relu")(x)
    if arch == "conv":
        filters_per_stage = conv_filters(image_shape)
        stride = 2 ** len(filters_per_stage)
        coarse = (height // stride, width // stride, filters_per_stage[-1])
        x = layers.Dense(coarse[0] * coarse[1] * coarse[2], activation="relu")(x)
        x = layers.Reshape(coarse)(x)
        for filters in reversed(filters_per_stage):
            x = layers.Conv2DTranspose(filters, CONV_KERNEL, strides=2, padding="same", activation="relu")(x)
        logits = layers.Conv2D(channels, 3, padding="same", name="logits", dtype="float32")(x)
    else:
        x = layers.Dense(height * width * channels, name="logits", dtype="float32")(x)
        logits = layers.Reshape((height, width, channels))(x)
    return keras.Model(z if labels is None else [z, labels], logits, name="decoder")
