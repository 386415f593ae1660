"""Image data: IDX files, TensorFlow Datasets and folders of pictures, and their `tf.data` pipelines.

The contracts are in `keras_vae.data.protocols`; `open_split` opens any kind of data as a `Split`.
"""

from keras_vae.data.binarization import binarize
from keras_vae.data.folders import ImageFolder
from keras_vae.data.memory import InMemoryImages, InMemorySplit
from keras_vae.data.pipelines import evaluation_dataset, steps_per_epoch, training_dataset
from keras_vae.data.protocols import Split, TrainingSource
from keras_vae.data.sources import load_split, naming_bad_pictures, open_split, split_of
from keras_vae.data.tfds_data import TfdsRecords

__all__ = ["ImageFolder", "InMemoryImages", "InMemorySplit", "Split", "TfdsRecords", "TrainingSource",
           "binarize", "evaluation_dataset", "load_split", "naming_bad_pictures", "open_split", "split_of",
           "steps_per_epoch", "training_dataset"]
