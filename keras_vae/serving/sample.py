"""Drawing images from an exported decoder, local or served (what `sample.py` runs).

Both ways run the decoder's `sample_png` signature and write the PNG it returns, so the same seed gives
the same file from a local SavedModel and from any TensorFlow Serving server that serves the same version.
A class-conditional export draws n images of each class asked for, one row per class (by default
every class).
"""

import tensorflow as tf

from keras_vae.errors import ServingError, UserError
from keras_vae.images import write_png
from keras_vae.serving.clients import RestClient, trim_message
from keras_vae.serving.exported import call, load_version, read_classes
from keras_vae.serving.sessions import PinnedSession
from keras_vae.serving.signatures import CLASS_NAMES, SAMPLE_PNG

# sample.py draws from the decoder: the servable a generation-only deployment has.
SERVABLE = "decoder"
ALL = "all"


def _listed(classes):
    return ", ".join(f"{index} {name!r}" for index, name in enumerate(classes))


def resolve_label(label, classes, source):
    """The class indices `label` asks for: a class name, a class index, or "all" (every class).

    Args:
        label: The text given, or None (every class of a class-conditional export, else no labels).
        classes: The export's class names, or None for an export that is not class-conditional.
        source: Where the export is, for the messages.

    Returns:
        A list of class indices, or None for an export that is not class-conditional.

    Raises:
        UserError: for a label of an export that is not class-conditional, or an unknown label; the
            message lists the classes there are.
    """
    if classes is None:
        if label is None:
            return None
        raise UserError(f"{source} is not class-conditional: it has no classes to choose from. "
                        f"Received: label={label!r}; leave it out.")
    if label is None or label == ALL:
        return list(range(len(classes)))
    if label in classes:  # a name first: names may be digits, as MNIST's "0" to "9" are
        return [classes.index(label)]
    if label.isdigit() and int(label) < len(classes):
        return [int(label)]
    raise UserError(f"{source} has no class {label!r}. Received: label={label!r}; give a class index, a "
                    f"name or {ALL!r}. Its classes: {_listed(classes)}.")


def _inputs(n, seed, labels):
    return {"n": n, "seed": seed, **({} if labels is None else {"labels": labels})}


def sample_local(model_dir, n, seed, version=None, label=None):
    """Runs the `sample_png` signature of a decoder version (default: the latest) in this process.

    Returns:
        (PNG bytes of the grid, the version folder, the class indices drawn or None).

    Raises:
        UserError: if there is no such version, it is damaged, has no `sample_png` signature, the
            label is not one of its classes, or it refuses the request.
    """
    key = SAMPLE_PNG.key(SERVABLE)
    loaded, path = load_version(model_dir, version, require=(key,))
    labels = resolve_label(label, read_classes(path), path)
    try:
        outputs = call(SAMPLE_PNG, loaded.signatures[key], **_inputs(n, seed, labels))
    except tf.errors.InvalidArgumentError as error:
        raise UserError(f"{path} refused the request: {trim_message(error.message)}")
    return outputs[SAMPLE_PNG.output()].numpy(), path, labels


def served_classes(session):
    """The class names of the version a `PinnedSession` (of the decoder or the vae) addresses, or None
    when it is not class-conditional (it has no `class_names` signature)."""
    try:
        answer = session.predict({"labels": [0]}, CLASS_NAMES.key(session.model))
    except ServingError as error:
        if error.status == 400 and "not found in signature def" in (error.detail or ""):
            return None
        raise
    return tuple(str(name) for name in answer[CLASS_NAMES.output(1)])


def sample_served(url, n, seed, version=None, label=None):
    """Runs the `sample_png` signature of the `decoder` servable of the TensorFlow Serving REST API at `url`.

    The class names and the samples come from one version (a pinned session), even during a rollout.

    Returns:
        (PNG bytes of the grid, the model URL, the class indices drawn or None).

    Raises:
        ServingError: if the server cannot be reached or refuses the request.
        UserError: if the label is not one of the served export's classes.
    """
    client = RestClient(url)

    def draw(session):
        labels = resolve_label(label, served_classes(session), client.model_url(SERVABLE, session.version))
        png = session.predict(_inputs(n, seed, labels), SAMPLE_PNG.key(SERVABLE))
        return png, client.model_url(SERVABLE, session.version), labels

    if version is None:
        return client.consistent(SERVABLE, draw)
    return draw(PinnedSession(client, SERVABLE, version))


def sample(config):
    """Draws `config.n` images from the prior (of each class asked for) and writes them to `config.out`
    as a PNG grid."""
    if config.server:
        png, source, labels = sample_served(config.server, config.n, config.seed, config.version,
                                            config.label)
    else:
        png, source, labels = sample_local(config.model_dir, config.n, config.seed, config.version,
                                           config.label)
    write_png(png, config.out)
    each = "" if labels is None else f" of each of classes {labels}, one row per class,"
    print(f"Wrote {config.n} samples{each} from {source} to {config.out}")
