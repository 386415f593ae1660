"""Loading a whole VAE from a `.keras` file, with errors that say what is wrong with the file."""

import zipfile
from pathlib import Path

import keras

from keras_vae.errors import UserError
from keras_vae.models.vae import VAE


def load_vae(path, compile=True):
    """Loads the `VAE` saved at `path` (e.g. a run's `model.keras`), with its optimizer state.

    Equivalent to `keras.models.load_model(path)` for a good file; a missing, damaged or foreign file
    raises `UserError` naming the file instead of an error from deep inside Keras.

    Raises:
        UserError: if the file is missing, is not a complete `.keras` archive, or holds another model.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError("path must name a .keras file, such as a run's model.keras. Received: "
                        f"path={str(path)!r}.")
    if not path.is_file():
        raise UserError(f"No model file at {path}: check the path (a training run writes "
                        "<run-dir>/model.keras when it ends).")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is damaged (not a complete .keras archive); train again or restore "
                        "it from a copy.")
    try:
        model = keras.models.load_model(path, compile=compile)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} cannot be loaded ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:300]}); train again or restore it from a copy.")
    if not isinstance(model, VAE):
        raise UserError(f"{path} holds a {type(model).__name__}, not a keras_vae VAE.")
    return model
