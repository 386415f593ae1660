"""What `keras-vae-explore` runs: load the model and the split, build the map, serve the page."""

from keras_vae import data, devices
from keras_vae.errors import UserError
from keras_vae.explore.api import Explorer
from keras_vae.explore.backends import LocalModel, ServedModel
from keras_vae.explore.server import LOOPBACK_HOSTS, make_server


def open_model(config):
    """The `LocalModel` or `ServedModel` an `ExploreConfig` names."""
    if config.server:
        return ServedModel(config.server, config.version, config.export_dir)
    return LocalModel(config.export_dir, config.version)


def build_explorer(config, model=None):
    """An `Explorer` of `model` (default: `open_model(config)`) with the map of `config.split`.

    Raises:
        UserError: if the split's images are not of the model's shape, or a conditional model's
            split has no labels.
    """
    model = model or open_model(config)
    name = config.split or config.default_split(1)
    split = data.split_of(config, name)
    with data.naming_bad_pictures(split, then="Choose another split, or replace them."):
        images, labels = split.load_all(config.map_points)
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise UserError(f"The images of split={name!r} have shape {tuple(images.shape[1:])}, but "
                        f"the model takes {tuple(model.image_shape)}: explore it with the data it was "
                        "trained on.")
    if model.classes is not None and labels is None:
        raise UserError(f"The model is class-conditional, but split={name!r} has no labels: choose a split "
                        "with labels (IDX label files, TFDS's label, class subfolders).")
    return Explorer(model, images, labels, split.classes, name, config.max_samples, config.max_steps)


def listening_lines(config, address):
    """What the command prints once it listens at `address` (host, port): a warning off the loopback,
    then the page's address."""
    host, port = address[:2]
    lines = []
    if config.host not in LOOPBACK_HOSTS:
        lines.append(f"Listening on {host} (--host): anyone who can reach this machine's port {port} can "
                     "use the page and the model; there is no authentication.")
    shown = f"[{host}]" if ":" in host else host
    return [*lines, f"Open http://{shown}:{port}/ (Ctrl-C to stop)."]


def explore(config):
    """Serves the explorer page an `ExploreConfig` describes until Ctrl-C."""
    devices.configure_devices()
    explorer = build_explorer(config)
    server = make_server(explorer, config.host, config.port, config.max_upload_bytes,
                         config.host in LOOPBACK_HOSTS)
    print(f"Exploring version {explorer.model.version} of {explorer.model.source} with the map of "
          f"{len(explorer.atlas.points)} images of {explorer.split!r}.")
    print("\n".join(listening_lines(config, server.server_address)), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
