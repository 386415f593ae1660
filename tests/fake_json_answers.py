"""The REST answers' JSON, as tensorflow_serving/util/json_tensor.cc (JT) writes it with PrettyWriter.

Predict answers read the typed fields of the response TensorProtos (float_val, int_val, ...), as the
server's writer does, so an answer carried in tensor_content would fail here as it fails there.
"""

import base64

import numpy as np
from fake_json_tensor import dtype_string
from fake_status import Status, invalid
from fake_writer import Writer
from tensorflow.core.framework import types_pb2

FIELDS = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
          types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
          types_pb2.DT_STRING: "string_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val",
          types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val"}


def decimal(value, single):
    """WriteDecimal (JT:124-170): %.6g if it reads back (SimpleAtof/Atod), else %.9g or %.17g; `.0` for
    a plain whole number; NaN, Infinity and -Infinity bare."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "-Infinity" if value < 0 else "Infinity"
    narrow = np.float32 if single else float
    digits = format(value, ".6g")
    if narrow(float(digits)) != narrow(value):
        digits = format(value, ".9g" if single else ".17g")
    return digits if "." in digits or "e" in digits else digits + ".0"


def _single(writer, tensor, as_bytes, offset):
    """AddSingleValueAndAdvance (JT:877-932): one value of a typed field."""
    field = FIELDS.get(tensor.dtype)
    values = getattr(tensor, field) if field else ()
    if offset[0] >= len(values):  # a value the TensorProto does not hold (e.g. all in tensor_content)
        raise Status("OUT_OF_RANGE", f"Index {offset[0]} out of range for {field or 'the typed fields'}")
    value = values[offset[0]]
    offset[0] += 1
    if field in ("float_val", "double_val"):
        return writer.raw(decimal(value, field == "float_val"))
    if field == "string_val" and as_bytes:
        return writer.start(False) and writer.scalar(b"b64") and writer.scalar(
            base64.b64encode(value)) and writer.end()
    if field is None or not writer.scalar(value):
        raise invalid(f"Failed to write JSON value for tensor type: {dtype_string(tensor.dtype)}")
    return True


def _values(writer, tensor, as_bytes, dim, offset):
    """AddTensorValues (JT:934-955)."""
    dims = [d.size for d in tensor.tensor_shape.dim]
    if dim > len(dims) - 1:
        return _single(writer, tensor, as_bytes, offset)
    writer.start(True)
    for _ in range(dims[dim]):
        if dim == len(dims) - 1:
            _single(writer, tensor, as_bytes, offset)
        else:
            _values(writer, tensor, as_bytes, dim + 1, offset)
    return writer.end()


def _is_bytes(name, tensor):
    """IsNamedTensorBytes (JT:866-875): a DT_STRING output whose alias ends in `_bytes`."""
    return tensor.dtype == types_pb2.DT_STRING and name.endswith("_bytes")


def predict_json(outputs, row_format):
    """MakeJsonFromTensors (JT:957-1063): {"predictions": rows} or {"outputs": ...}, as text."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    writer = Writer()
    writer.start(False)
    objects = len(names) > 1
    if row_format:
        batch = None
        for name in names:
            dims = outputs[name].tensor_shape.dim
            if not dims:
                raise invalid(f"Tensor name: {name} has no shape information ")
            if batch is not None and dims[0].size != batch:
                raise invalid(f"Tensor name: {name} has inconsistent batch size: {dims[0].size} "
                              f"expecting: {batch}")
            batch = dims[0].size
        offsets = {name: [0] for name in names}
        writer.scalar(b"predictions")
        writer.start(True)
        for _ in range(batch):
            if objects:
                writer.start(False)
            writer.single_line_arrays = True
            for name in names:
                if objects:
                    writer.scalar(name.encode())
                _values(writer, outputs[name], _is_bytes(name, outputs[name]), 1, offsets[name])
            writer.single_line_arrays = False
            if objects:
                writer.end()
        writer.end()
    else:
        writer.scalar(b"outputs")
        if objects:
            writer.start(False)
        for name in names:
            if objects:
                writer.scalar(name.encode())
            _values(writer, outputs[name], _is_bytes(name, outputs[name]), 0, [0])
        if objects:
            writer.end()
    writer.end()
    return writer.text()


def _object_with(key):
    """A writer inside `{"<key>": ` (the start every answer shares)."""
    writer = Writer()
    writer.start(False)
    writer.scalar(key)
    return writer


def classification_json(result):
    """MakeJsonFromClassificationResult (JT:1065-1100): {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    writer = _object_with(b"results")
    writer.start(True)
    for classifications in result.classifications:
        writer.single_line_arrays = True
        writer.start(True)
        for item in classifications.classes:
            writer.start(True)
            writer.scalar(item.label.encode())
            writer.raw(decimal(item.score, True))
            writer.end()
        writer.end()
        writer.single_line_arrays = False
    writer.end()
    writer.end()
    return writer.text()


def regression_json(result):
    """MakeJsonFromRegressionResult (JT:1102-1127): {"results": [value, ...]} on one line."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    writer = _object_with(b"results")
    writer.single_line_arrays = True
    writer.start(True)
    for regression in result.regressions:
        writer.raw(decimal(regression.value, True))
    writer.end()
    writer.end()
    return writer.text()


def error_json(message):
    """MakeJsonFromStatus (JT:1129-1139): {"error": message}; no prefix, no cut."""
    writer = _object_with(b"error")
    writer.scalar(message.encode("utf-8", "surrogateescape"))
    writer.end()
    return writer.text()
