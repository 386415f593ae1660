"""Training: the `strategy.run` loop, its callbacks, backups, preemption, and a whole `train.py` run."""

from keras_vae.training.backup import RunBackup
from keras_vae.training.callbacks import KLWarmup, SampleGrid, TensorBoardImages
from keras_vae.training.distribute import check_global_batch, is_chief, make_strategy
from keras_vae.training.loop import Trainer, make_optimizer
from keras_vae.training.preemption import stop_on_signals
from keras_vae.training.run import train

__all__ = ["KLWarmup", "RunBackup", "SampleGrid", "TensorBoardImages", "Trainer", "check_global_batch",
           "is_chief", "make_optimizer", "make_strategy", "stop_on_signals", "train"]
