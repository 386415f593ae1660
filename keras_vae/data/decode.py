"""Decoding encoded pictures (PNG, JPEG, GIF, BMP) into uint8 images of one shape, in the graph.

Every check names the picture, so a bad file in a data set of millions is found by its name.
"""

import dataclasses

import tensorflow as tf

from keras_vae.errors import UserError


@dataclasses.dataclass(frozen=True)
class Decoding:
    """What every decoded image becomes.

    Args:
        height, width: The size of every image; pictures of another size are resized (when `resize`)
            or refused.
        channels: 1 (grey) or 3 (colour); pictures of the other kind are refused unless `grayscale`.
        resize: Resize every picture to height x width (bilinear, antialiased when shrinking; the
            aspect ratio is not kept).
        grayscale: Convert colour pictures to grey (channels is then 1).
    """

    height: int
    width: int
    channels: int
    resize: bool = False
    grayscale: bool = False

    @property
    def image_shape(self):
        return (self.height, self.width, self.channels)


def native_shape(contents, name):
    """(height, width, channels) of one encoded picture, decoded eagerly; channels 1 or 3.

    Raises:
        UserError: naming `name` when the picture cannot be decoded.
    """
    try:
        image = tf.io.decode_image(contents, channels=0, expand_animations=False)
    except tf.errors.OpError as error:
        raise UserError(f"Cannot decode {name}: {error.message.split(' [Op:')[0]}.")
    height, width, channels = image.shape
    return height, width, 1 if channels < 3 else 3


def _require(condition, image, message):
    """`image`, once `condition` holds; else fails with `message` (a list of strings and tensors).

    The check is a branch that produces the image, so nothing that uses the image (a shape check
    that would fail with a less helpful message) can run before it.
    """

    def fail():
        with tf.control_dependencies([tf.debugging.Assert(False, message, summarize=4)]):
            return tf.identity(image)

    return tf.cond(condition, lambda: tf.identity(image), fail)


def decode(contents, name, decoding, check_only=False):
    """Decodes one encoded picture into uint8 [height, width, channels] as `decoding` says.

    Args:
        contents: Scalar string tensor, the file's bytes.
        name: Scalar string tensor naming the picture (its path) in the messages.
        decoding: A `Decoding`.
        check_only: Run every check that can fail, but skip the resizing (which cannot): the
            image is then of the picture's own size.
    """
    # channels=0 keeps the picture's own channels, so a grey picture among colour ones is noticed.
    image = tf.io.decode_image(contents, channels=0, expand_animations=False)
    # Read before any later op: a shape check at the end would otherwise let TensorFlow's shape
    # inference assume the checked shape here, and the size check below would pass.
    shape = tf.shape(image)
    size, own = shape[:2], shape[-1]
    if decoding.grayscale:
        image = tf.cond(own >= 3, lambda: tf.image.rgb_to_grayscale(image[..., :3]),
                        lambda: image[..., :1])
    else:
        colour = decoding.channels == 3
        image = _require(
            tf.equal(own >= 3, colour), image,
            [name, "is a", "grey" if colour else "colour", "picture, but the first picture is",
             "colour: convert the pictures to one kind, or use grayscale=True." if colour else
             "grey: convert the pictures to one kind, or use grayscale=True to train on grey levels."])
        image = image[..., :decoding.channels]  # drops an alpha channel
    if decoding.resize and check_only:
        return image
    if decoding.resize:
        resized = tf.image.resize(image, (decoding.height, decoding.width), antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    else:
        image = _require(
            tf.reduce_all(tf.equal(size, [decoding.height, decoding.width])), image,
            [name, "is", size[0], "x", size[1], "pixels, but the first picture is",
             f"{decoding.height} x {decoding.width}: resize them all, with image_size=(HEIGHT, WIDTH)."])
    return tf.ensure_shape(image, decoding.image_shape)


# In a graph, as in the pipeline, so that the assertions print their messages the same way; traced
# once per `Decoding`, not per picture.
_decode_in_graph = tf.function(decode)


def diagnose(contents, name, decoding):
    """The message of what is wrong with one picture, or None when it decodes as `decoding` says."""
    try:
        _decode_in_graph(tf.constant(contents), tf.constant(name), decoding)
    except tf.errors.OpError as error:
        # The op's own message is the last non-empty line before the node names.
        lines = [line.strip() for line in error.message.split("\n\t")[0].splitlines() if line.strip()]
        text = lines[-1].split(" [Op:")[0] if lines else error.message
        if text.startswith("assertion failed:"):
            # Assert prints its data as "[item] [item] ...": join the items into the sentence.
            return " ".join(part.strip("[] ") for part in text.removeprefix("assertion failed:").split("] ["))
        return f"cannot decode {name}: {text}"
    return None

