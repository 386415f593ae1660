"""One loaded version of a model, run as TensorFlow Serving runs a SavedModelBundle.

A TF1 session over the SavedModel's MetaGraph, fed the request's tensors as they came (no casting), so
dtype and shape errors are TensorFlow's own; every Session::Run carries TensorFlow's RunOptions
timeout, so a deadline fails with TensorFlow's own "Timed out waiting for notification". Rules cite
tensorflow_serving/servables/tensorflow/*.cc, TensorFlow's tensorflow/core/framework/tensor.cc and
tensorflow/cc/saved_model/util.cc.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
from fake_status import CODE_NAMES, Status, invalid
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.python.client import pywrap_tf_session
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2, regression_pb2

WARMUP_FILE = Path("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # saved_model_warmup_util.h: WarmupConsts::kMaxNumRecords
MAX_BATCH_SIZE = 1000  # TF shared_batch_scheduler.h: input_batch_size_limit, when no parameters file
# Tensor::AsProtoField and FromProtoField (tensor.cc): the typed field of each dtype, and its numpy type.
TYPED = {types_pb2.DT_FLOAT: ("float_val", np.float32), types_pb2.DT_DOUBLE: ("double_val", np.float64),
         types_pb2.DT_INT32: ("int_val", np.int32), types_pb2.DT_INT16: ("int_val", np.int16),
         types_pb2.DT_INT8: ("int_val", np.int8), types_pb2.DT_UINT8: ("int_val", np.uint8),
         types_pb2.DT_UINT16: ("int_val", np.uint16), types_pb2.DT_INT64: ("int64_val", np.int64),
         types_pb2.DT_UINT32: ("uint32_val", np.uint32), types_pb2.DT_UINT64: ("uint64_val", np.uint64),
         types_pb2.DT_BOOL: ("bool_val", np.bool_), types_pb2.DT_STRING: ("string_val", object)}


def from_proto(proto):
    """Tensor::FromProto: None when it fails. Fewer typed values than the shape are padded with the
    last one (none: zeros), extra ones are ignored; only tensor_content must have the exact size."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(size < 0 for size in dims):
        return None
    count = int(np.prod(dims, dtype=np.int64))
    if proto.dtype not in TYPED:  # dtypes no signature here uses: TensorFlow's own reader
        try:
            return tf.make_ndarray(proto)
        except (TypeError, ValueError):
            return None
    field, numpy_type = TYPED[proto.dtype]
    if proto.tensor_content and numpy_type is object:  # strings packed in tensor_content
        return tf.make_ndarray(proto)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * np.dtype(numpy_type).itemsize:
            return None
        return np.frombuffer(proto.tensor_content, numpy_type).reshape(dims).copy()
    values = list(getattr(proto, field))
    if count and not values:
        values = [b"" if numpy_type is object else 0]
    values = (values + values[-1:] * count)[:count]
    return np.array(values, dtype=object if numpy_type is object else None).astype(numpy_type).reshape(dims)


def as_proto_field(array, dtype):
    """Tensor::AsProtoField: every value in the dtype's typed field, tensor_content empty."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if dtype not in TYPED:
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=tf.dtypes.as_dtype(dtype)))
        return proto
    getattr(proto, TYPED[dtype][0]).extend(array.ravel().tolist())
    return proto


class Servable:
    """A SavedModelBundle: loaded, then warmed up (servables/tensorflow/saved_model_warmup.cc).

    Raises:
        Status: if the SavedModel cannot be loaded or a warm-up request fails: the version fails to load.
    """

    def __init__(self, path, version, enable_batching=False, warmup_iterations=1, warmup=True):
        self.path, self.version, self.batching = Path(path), version, enable_batching
        if not any((self.path / name).exists() for name in ("saved_model.pb", "saved_model.pbtxt")):
            raise Status("NOT_FOUND", "Could not find SavedModel .pb or .pbtxt at supplied export directory "
                                      f"path: {path}. Check that the directory exists and that you have the "
                                      "right permissions for accessing it.")
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        try:
            self.meta_graph = tf.compat.v1.saved_model.load(self.session, ["serve"], str(path))
            if warmup:  # --enable_model_warmup (server.h:91), true by default
                self._warm_up(warmup_iterations)
        except tf.errors.OpError as error:  # a damaged SavedModel: TensorFlow's status
            self.session.close()
            raise Status(CODE_NAMES[error.error_code], error.message)
        except (DecodeError, OSError, RuntimeError, ValueError) as error:  # refused by the Python loader
            self.session.close()
            raise Status("INTERNAL", f"Cannot load the SavedModel in {path}: {error}")
        except Status:
            self.session.close()
            raise

    def _warm_up(self, iterations):
        """RunSavedModelWarmup (saved_model_warmup_util.cc:77-240, saved_model_warmup.cc:39-78)."""
        path = self.path / WARMUP_FILE
        if not path.exists():  # warm-up data is optional
            return
        count = 0
        try:
            for record in tf.compat.v1.io.tf_record_iterator(str(path)):
                log = prediction_log_pb2.PredictionLog()
                try:
                    log.ParseFromString(record)
                except DecodeError:
                    raise invalid(f"Failed to parse warmup record: {record.decode(errors='surrogateescape')} "
                                  f"from {path}")
                for _ in range(iterations):
                    self._replay(log)
                count += 1
                if count > MAX_WARMUP_RECORDS:  # checked after the record has run
                    raise invalid(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at "
                                  f"{path}")
        except tf.errors.DataLossError as error:
            raise Status("DATA_LOSS",
                         f"{error.message}. Please verify your warmup data is in TFRecord format.")

    def _replay(self, log):
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            self.predict(log.predict_log.request, timeout_ms=0)
        elif kind == "classify_log":
            self.classify(log.classify_log.request, timeout_ms=0)
        elif kind == "regress_log":
            self.regress(log.regress_log.request, timeout_ms=0)
        elif kind is not None:  # multi_inference_log is not modelled here: refused rather than skipped
            number = log.DESCRIPTOR.fields_by_name[kind].number
            raise Status("UNIMPLEMENTED", f"Unsupported log_type for warmup: {number}")

    def signature(self, name, error):
        """The SignatureDef `name` ("" = serving_default), or `error(name)` raised."""
        name = name or "serving_default"
        if name not in set(self.meta_graph.signature_def):  # a set: the name may not be UTF-8
            raise error(name)
        return self.meta_graph.signature_def[name]

    def run(self, feeds, fetch_names, timeout_ms):
        """Session::Run; with batching, through BatchingSession (batching_session.cc:376-456).

        Args:
            feeds: {tensor name: array}.
            timeout_ms: RunOptions.timeout_in_ms; 0 or less means no timeout.
        """
        if self.batching:  # batching_util.h:81-110 ComputeTensorBatchSize, then the scheduler's limit
            if not feeds:
                raise invalid("Batching Run() must have at least one input tensor")
            if any(np.ndim(value) == 0 for value in feeds.values()):
                raise invalid("Batching Run() input tensors must have at least one dimension")
            if len({np.shape(value)[0] for value in feeds.values()}) > 1:
                raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
            size = np.shape(next(iter(feeds.values())))[0]
            if size > MAX_BATCH_SIZE:
                raise invalid(f"Task size {size} is larger than maximum input batch size {MAX_BATCH_SIZE}")
        graph = self.session.graph
        inputs = {graph.get_tensor_by_name(name)._as_tf_output(): value for name, value in feeds.items()}
        outputs = [graph.get_tensor_by_name(name)._as_tf_output() for name in fetch_names]
        options = None
        if timeout_ms > 0:
            options = pywrap_tf_session.TF_NewBufferFromString(
                tf.compat.v1.RunOptions(timeout_in_ms=timeout_ms).SerializeToString())
        try:
            return self.session._call_tf_sessionrun(options, inputs, outputs, [], None)
        except tf.errors.OpError as error:  # the session's own status, as Session::Run returns it
            raise Status(CODE_NAMES[error.error_code], error.message)
        finally:
            if options is not None:
                pywrap_tf_session.TF_DeleteBuffer(options)

    def predict(self, request, timeout_ms):
        """RunPredict (predict_util.cc:80-192); answers in typed fields (kAsProtoField)."""
        signature = self.signature(request.model_spec.signature_name, lambda name: Status(
            "FAILED_PRECONDITION", f'Serving signature key "{name}" not found.'))
        sent, expected = sorted(request.inputs), sorted(signature.inputs)
        if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
            extra, missing = sorted(set(sent) - set(expected)), sorted(set(expected) - set(sent))
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sent)}}})"
                f" != len({{{','.join(expected)}}}). Sent extra: {{{','.join(extra)}}}. Missing but "
                f"required: {{{','.join(missing)}}}.")
        feeds = {}
        for alias in expected:  # saved_model/util.cc GetInputValues: fed as they came, no casting
            info = signature.inputs[alias]
            if alias not in request.inputs and alias not in signature.defaults:
                raise invalid(
                    f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no "
                    f"default value provided. Inputs expected to be in the request {{{','.join(sent)}}}, "
                    f"or default input alias set: {','.join(sorted(signature.defaults))}")
            value = from_proto(request.inputs[alias] if alias in request.inputs else
                               signature.defaults[alias])
            if value is None:
                raise invalid(f"tensor parsing error: {alias}")
            feeds[info.name] = value
        if sent and set(sent) - set(expected):
            raise invalid(f"Inputs contains invalid name. Used request inputs: "
                          f"{','.join(sorted(set(sent) & set(expected)))}, request input: {','.join(sent)}")
        aliases = list(request.output_filter)
        for index, alias in enumerate(aliases):
            if alias not in signature.outputs:
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                              f"in the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in aliases[:index]:
                raise invalid(f"duplicate output tensor alias: {alias}")
        aliases = aliases or sorted(signature.outputs)
        values = self.run(feeds, [signature.outputs[a].name for a in aliases], timeout_ms)
        response = predict_pb2.PredictResponse()
        self._spec(request, response)
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for alias, value in zip(aliases, values, strict=True):
            response.outputs[alias].CopyFrom(as_proto_field(np.asarray(value),
                                                            signature.outputs[alias].dtype))
        return response

    def _preprocess(self, request, kind, output_counts, wanted):
        """GetClassificationSignatureDef / GetRegressionSignatureDef with PreProcessClassification /
        PreProcessRegression (classifier.cc:151-222, regressor.cc:146-188): (signature, output names)."""
        signature = self.signature(request.model_spec.signature_name, lambda name: invalid(
            f"No signature was found with the name: {name}"))
        if len(signature.inputs) != 1:
            raise invalid("Expected one input Tensor.")
        if len(signature.outputs) not in output_counts:
            raise invalid("Expected one output Tensor." if kind == "regression" else
                          f"Expected one or two output Tensors, found {len(signature.outputs)}")
        debug = text_format.MessageToString(signature)
        if "inputs" not in signature.inputs:
            raise invalid(f"No {kind} inputs found in SignatureDef: {debug}")
        names = [name for name in wanted if name in signature.outputs]
        if not names:
            raise invalid(f"No regression outputs found in SignatureDef: {debug}" if kind == "regression" else
                          'Expected classification signature outputs to contain at least one of "classes" '
                          f'or "scores". Signature was: {debug}')
        return signature, names

    def _run_examples(self, request, signature, names, timeout_ms):
        """PerformOneShotTensorComputation (util.cc:134-236): {output: array} and the example count."""
        listed = request.input.WhichOneof("kind")
        examples = getattr(request.input, listed).examples if listed else []
        if not examples:
            raise invalid("Input is empty.")
        context = (request.input.example_list_with_context.context.SerializeToString()
                   if listed == "example_list_with_context" else b"")  # prepended to each example
        serialized = np.array([context + example.SerializeToString() for example in examples], object)
        values = self.run({signature.inputs["inputs"].name: serialized},
                          [signature.outputs[n].name for n in names], timeout_ms)
        return dict(zip(names, values, strict=True)), len(examples)

    def classify(self, request, timeout_ms):
        """RunClassify (classifier.cc:225-346): a ClassificationResult."""
        signature, names = self._preprocess(request, "classification", (1, 2), ("classes", "scores"))
        values, count = self._run_examples(request, signature, names, timeout_ms)
        for name, value in values.items():
            if value.ndim != 2:
                raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(value)}")
            wanted = ("DT_STRING", np.object_) if name == "classes" else ("DT_FLOAT", np.float32)
            if value.dtype != wanted[1]:
                raise invalid(f"Expected {name} Tensor of {wanted[0]}. Got: {_dtype_name(value)}")
            if value.shape[0] != count:
                raise invalid(f"Expected {name} output batch size of {count}. Got: {value.shape[0]}")
        if len(values) == 2 and values["classes"].shape[1] != values["scores"].shape[1]:
            raise invalid(f"Tensors class and score should match in dim_size(1). Got "
                          f"{values['classes'].shape[1]} vs. {values['scores'].shape[1]}")
        response = classification_pb2.ClassificationResponse()
        self._spec(request, response)
        result = response.result
        for i in range(count):
            classes = result.classifications.add()
            for c in range(next(iter(values.values())).shape[1]):
                item = classes.classes.add()
                if "classes" in values:
                    item.label = values["classes"][i, c].decode("utf-8", "replace")
                if "scores" in values:
                    item.score = values["scores"][i, c]
        return response

    def regress(self, request, timeout_ms):
        """RunRegress (regressor.cc:206-300): a RegressionResult."""
        signature, names = self._preprocess(request, "regression", (1,), ("outputs",))
        values, count = self._run_examples(request, signature, names, timeout_ms)
        value = values["outputs"]
        if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
            raise invalid("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                          f"{_shape(value)}")
        if value.shape[0] != count:
            raise invalid(f"Input batch size did not match output batch size: {count} vs. {value.shape[0]}")
        if value.dtype != np.float32:
            raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(value)}")
        response = regression_pb2.RegressionResponse()
        self._spec(request, response)
        for item in value.ravel():
            response.result.regressions.add(value=item)
        return response

    def _spec(self, request, response):
        """MakeModelSpec (servables/tensorflow/util.cc): the name, the signature asked for, the version."""
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = request.model_spec.signature_name
        response.model_spec.version.value = self.version

    def close(self):
        self.session.close()


def _shape(array):
    """TensorShape::DebugString: [2,3]."""
    return "[" + ",".join(map(str, array.shape)) + "]"


def _dtype_name(array):
    dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)
    return types_pb2.DataType.Name(dtype.as_datatype_enum)
