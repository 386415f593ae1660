"""Small SavedModels for the fakes' own tests: each signature makes TensorFlow do one thing the server
must answer in its own way (typed outputs, strings, a slow step, an op's error, regress, classify).

All of Toy's inputs have a batch dimension, so it also loads with --enable_batching; Scalar's do not.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
from fake_servable import WARMUP_FILE
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

X = tf.TensorSpec([None], tf.float32, name="x")
SLEEP_MICROS = 5_000_000  # far longer than any deadline the tests set: only a timeout ends it early


class Toy(tf.Module):
    """The signatures; `folder` holds the files some of them read."""

    def __init__(self, folder):
        super().__init__()
        self.missing, self.corrupt = str(Path(folder, "missing.txt")), str(Path(folder, "corrupt.tfrecord"))
        Path(self.corrupt).write_bytes(b"not a TFRecord file")

    @tf.function(input_signature=[X])
    def floats(self, x):
        return {"f32": x, "f64": tf.cast(x, tf.float64)}

    @tf.function(input_signature=[X])
    def ints(self, x):
        return {"i32": tf.cast(x, tf.int32), "i64": tf.cast(x, tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def echo(self, text):
        return {"text": text, "text_bytes": text}

    @tf.function(input_signature=[X])
    def sleep(self, x):
        data = tf.data.Dataset.range(1)
        slow = tf.raw_ops.SleepDataset(input_dataset=data._variant_tensor, output_types=[tf.int64],
                                       output_shapes=[[]],
                                       sleep_microseconds=tf.constant(SLEEP_MICROS, tf.int64))
        total = tf.data.experimental.from_variant(slow, data.element_spec).reduce(tf.constant(0, tf.int64),
                                                                                  lambda a, b: a + b)
        return {"y": x + tf.cast(total, tf.float32)}

    @tf.function(input_signature=[X])
    def missing_file(self, x):  # NOT_FOUND
        return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(self.missing)), tf.float32)}

    @tf.function(input_signature=[X])
    def read_folder(self, x):  # FAILED_PRECONDITION: "<folder>; Is a directory"
        folder = str(Path(self.missing).parent)
        return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(folder)), tf.float32)}

    @tf.function(input_signature=[X])
    def corrupt_record(self, x):  # DATA_LOSS
        records = tf.data.TFRecordDataset(self.corrupt)
        return {"y": x + tf.cast(records.reduce(0, lambda a, r: a + tf.strings.length(r)), tf.float32)}

    def _features(self, serialized):
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": 2 * self._features(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        x = self._features(inputs)
        scores = tf.stack([tf.sigmoid(x), 1 - tf.sigmoid(x)], axis=1)
        classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(x)[0], 1])
        return {"scores": scores, "classes": classes}


class Scalar(tf.Module):
    """A signature whose input is a scalar, as the decoder's `sample` has."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="n")])
    def count(self, n):
        return {"y": tf.range(n)}


def write_warmup(version_dir, records=1, signature="floats", inputs=None):
    """A warm-up file of `records` PredictLogs for `signature` (default input: x = [1.0])."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for name, value in (inputs or {"x": np.array([1.0], np.float32)}).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    path = Path(version_dir, WARMUP_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(records):
            writer.write(log.SerializeToString())


def save_toy(version_dir, folder):
    """Saves the toy model at `version_dir` (with a one-record warm-up file); `folder` gets its files."""
    toy = Toy(folder)
    names = ["floats", "ints", "echo", "sleep", "missing_file", "read_folder", "corrupt_record", "regress",
             "classify"]
    tf.saved_model.save(toy, str(version_dir), signatures={name: getattr(toy, name) for name in names})
    write_warmup(version_dir)
    return Path(version_dir)


def save_scalar(version_dir):
    """Saves the Scalar model at `version_dir`, with a warm-up request for n = 2."""
    scalar = Scalar()
    tf.saved_model.save(scalar, str(version_dir), signatures={"count": scalar.count})
    write_warmup(version_dir, signature="count", inputs={"n": np.int32(2)})
    return Path(version_dir)
