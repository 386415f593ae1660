"""train.py's options: TrainConfig."""

import dataclasses
import json

from keras_vae.config.base import DataConfig, option, shown
from keras_vae.errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainConfig(DataConfig):
    """Train a variational autoencoder and export it as SavedModels (the decoder, and the whole VAE)."""

    train_split: str | None = option(
        None, "training split, TFDS slicing syntax (e.g. 'test[:8000]'); default 'train', or "
        "'train[:90%]' of an --image-dir"
    )
    val_split: str | None = option(
        None, "validation split, TFDS slicing syntax (e.g. 'test[8000:]'); default 'test', or "
        "'train[90%:]' of an --image-dir"
    )
    skip_bad_pictures: bool = option(
        False, "--image-dir: train without the pictures that cannot be decoded (every picture is checked "
        "before training; without this option, any bad one stops it), listing them in config.json"
    )
    arch: str = option("mlp", "network architecture", choices=("mlp", "conv"))
    latent_dim: int = option(20, "size of the latent space", minimum=1)
    hidden_dim: int = option(400, "width of the hidden dense layer", minimum=1)
    likelihood: str = option(
        "bernoulli", "reconstruction likelihood", choices=("bernoulli", "gaussian")
    )
    conditional: bool = option(False, "class-conditional VAE: encoder and decoder also see y, one-hot over "
                               "the data's classes (IDX label files, TFDS 'label', class subfolders)")
    prior: str = option("auto", "p(z): normal = N(0, I); class = a learned Gaussian per class; vamp = the "
                        "VampPrior of --pseudo-inputs learned pictures; auto = class with --conditional, "
                        "else normal", choices=("auto", "normal", "class", "vamp"))
    pseudo_inputs: int | None = option(None, "--prior vamp: M, its pseudo-inputs, which start as the first "
                                       "M training images of the seed's order; default 500", minimum=1)
    objective: str = option("elbo", "elbo, or iwae: the importance-weighted bound of --iw-samples samples "
                            "per image", choices=("elbo", "iwae"))
    iw_samples: int = option(1, "--objective iwae: K, the samples per image (about K times the decoder's "
                             "time and memory)", minimum=1)
    beta: float = option(1.0, "weight of the KL term (beta-VAE)", minimum=0.0)
    kl_warmup_epochs: int = option(
        0, "raise the KL weight linearly from 0 to --beta over this many epochs", minimum=0
    )
    binarize: str = option(
        "none", "pixels: none = grey levels; static = one fixed Bernoulli draw per image; dynamic = a "
        "fresh draw every epoch (validation then uses the static draw)",
        choices=("none", "static", "dynamic"),
    )
    epochs: int = option(10, "number of training epochs", minimum=1)
    batch_size: int = option(128, "global batch size, split over all replicas", minimum=1)
    optimizer: str = option("adam", "optimizer", choices=("adam", "sgd"))
    learning_rate: float = option(1e-3, "learning rate")
    seed: int = option(0, "seed for initialisation, data order and sampling noise", minimum=0)
    strategy: str = option(
        "auto",
        "tf.distribute strategy; auto = mirrored when more than one GPU is visible, else default",
        choices=("auto", "default", "mirrored", "multiworker"),
    )
    steps_per_execution: int = option(
        10, "training steps run per call into TensorFlow (fewer Python round trips)", minimum=1
    )
    jit_compile: str = option(
        "auto", "XLA-compile each replica's forward and backward pass; auto = on when a GPU is visible "
        "(on CPU it measured slower)", choices=("auto", "on", "off"),
    )
    mixed_precision: str = option(
        "none", "compute in 16 bits with float32 weights and loss (bfloat16; or float16, with loss "
        "scaling); for GPUs and TPUs", choices=("none", "bfloat16", "float16"),
    )
    export_dir: str = option("saved_models", "export root: <export-dir>/{decoder,vae}/<version>/")
    run_dir: str = option("runs/default", "folder for config.json, metrics.json and sample grids")
    sample_every: int = option(5, "write a sample grid every N epochs (0: never)", minimum=0)
    backup_every_steps: int = option(
        0, "back up the run every N steps as well as after every epoch (0: after epochs only)", minimum=0
    )
    restart: bool = option(False, "discard the run's backups and start over instead of resuming")
    gpu_memory_growth: bool = option(
        True, "take GPU memory as needed rather than all at the start, so processes can share a GPU"
    )
    deterministic: bool = option(
        False, "bitwise-repeatable GPU runs (TensorFlow op determinism; some GPU ops are slower)"
    )
    check_numerics: bool = option(False, "find the op that produces a NaN or Inf (slow)")
    tensorboard: bool = option(
        False, "write TensorBoard scalars every epoch, and images with the sample grids, to "
        "<run-dir>/tensorboard"
    )
    progress: bool = option(True, "show a progress bar")

    # Options that may change between a run and its resumption; any other change means another run.
    RESUMABLE = frozenset({"epochs", "progress", "sample_every", "backup_every_steps", "export_dir",
                           "steps_per_execution", "check_numerics", "restart", "strategy", "tensorboard",
                           "jit_compile", "gpu_memory_growth", "deterministic", "skip_bad_pictures"})

    def validate(self):
        if not self.learning_rate > 0:
            raise UserError(f"--learning-rate must be positive; got {self.learning_rate}.")
        super().validate()
        for index, name in enumerate(("train_split", "val_split")):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.default_split(index))

    @classmethod
    def in_options(cls, message):
        # The library's `classes` are the data's under --conditional, and None without it.
        return super().in_options(message.replace("classes=None", "conditional=False")
                                  .replace("`classes`", "`conditional`"))

    def check_resumable_from(self, saved):
        """Raises a `UserError` if the run saved with options `saved` (a dict) is another run."""
        current = json.loads(json.dumps(self.to_dict()))  # tuples as lists, as they were saved
        changed = sorted(k for k, v in saved.items() if k not in self.RESUMABLE and current.get(k, v) != v)
        if changed:
            differences = ", ".join(f"--{k.replace('_', '-')} {shown(saved[k])} -> {shown(current[k])}"
                                    for k in changed)
            raise UserError(
                f"{self.run_dir} holds a run with other options ({differences}). Resume it with its own "
                "options, start it over with --restart, or choose another --run-dir."
            )
