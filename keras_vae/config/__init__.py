"""Run configuration: one dataclass per command, built from the command line or from JSON.

Every default lives here. A config rejects unknown keys, values of the wrong type and values out of
range with a `UserError`, so a typo never silently falls back to a default.
"""

from keras_vae.config.base import DEFAULT_SPLITS
from keras_vae.config.exports import EvaluateConfig, ExploreConfig, SampleConfig
from keras_vae.config.train import TrainConfig

__all__ = ["DEFAULT_SPLITS", "EvaluateConfig", "ExploreConfig", "SampleConfig", "TrainConfig"]
