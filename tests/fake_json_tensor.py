"""JSON to tensors and back, as tensorflow_serving/util/json_tensor.cc (JT) does it, over fake_json.

Requests are typed by the signature's dtypes, never coerced; answers read the typed fields of the
response TensorProtos (float_val, int_val, ...) as the server's writer does. Map iteration order is
unspecified in the server (protobuf maps); here it is sorted.
"""

import math

import numpy as np
from fake_json import JsonObject, ParseError, parse
from fake_status import Status, invalid
from fake_writer import debug_string
from tensorflow.core.example import feature_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2

# AddValueToTensor (JT:290-342): the rapidjson predicate and the TensorProto field of each dtype.
BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
INTS = {"int32": (-2**31, 2**31), "uint32": (0, 2**32), "int64": (-2**63, 2**63), "uint64": (0, 2**64)}
LEAVES = {types_pb2.DT_FLOAT: ("number", "float_val"), types_pb2.DT_DOUBLE: ("number", "double_val"),
          types_pb2.DT_INT32: ("int32", "int_val"), types_pb2.DT_INT16: ("int32", "int_val"),
          types_pb2.DT_INT8: ("int32", "int_val"), types_pb2.DT_UINT8: ("int32", "int_val"),
          types_pb2.DT_STRING: ("string", "string_val"), types_pb2.DT_INT64: ("int64", "int64_val"),
          types_pb2.DT_BOOL: ("bool", "bool_val"), types_pb2.DT_UINT32: ("uint32", "uint32_val"),
          types_pb2.DT_UINT64: ("uint64", "uint64_val")}


def dtype_string(dtype):
    """DataTypeString: DT_FLOAT -> float."""
    return types_pb2.DataType.Name(dtype)[3:].lower()


def json_type(value):
    """JsonTypeString (JT:95-112)."""
    if value is None or isinstance(value, bool):
        return {None: "Null", False: "False", True: "True"}[value]
    return {JsonObject: "Object", list: "Array", bytes: "String"}.get(type(value), "Number")


def text(raw):
    """A JSON string's bytes as message text (invalid UTF-8 survives, as in the server's std::string)."""
    return raw.decode("utf-8", "surrogateescape")


def parse_json(body):
    """ParseJson (JT:471-501): the document, which must be an object."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = parse(body)
    except ParseError as error:
        raise invalid(f"JSON Parse error: {error}")
    if not isinstance(document, JsonObject):
        raise invalid(f"JSON Value: {debug_string(document)} Is not object")
    return document


def signature_name(document):
    """FillSignature (JT:503-515): the first `signature_name`, or "" when absent."""
    member = document.find(b"signature_name")
    if member is None:
        return ""
    if not isinstance(member[1], bytes):
        raise invalid(f"JSON Value: {debug_string(document)} not formatted correctly. 'signature_name' key "
                      "must be a string value.")
    return text(member[1])


def is_base64(value):
    """IsValBase64Object (JT:353-367): an object of one member, "b64", holding a string."""
    return isinstance(value, JsonObject) and len(value) == 1 and isinstance(value.get(b"b64"), bytes)


def unbase64(encoded):
    """absl::Base64Unescape (escaping.cc, Base64UnescapeInternal); None when it refuses.

    ASCII whitespace is skipped anywhere, the padding may be left out, and '.' pads as '=' does.
    """
    values, pads = [], 0
    for c in encoded:
        if c in b" \t\n\v\f\r":
            continue
        if c in b"=.":
            pads += 1
        elif pads or c not in BASE64:
            return None
        else:
            values.append(BASE64.index(c))
    state = len(values) % 4
    if state == 1 or pads not in (0, {0: 0, 2: 2, 3: 1}[state]):
        return None
    size = len(values) * 6 // 8
    bits = 0
    for value in values:
        bits = bits << 6 | value
    return (bits >> (len(values) * 6 - size * 8)).to_bytes(size, "big")


def _fits(value, kind):
    """The rapidjson predicate AddValueToTensor asks: IsNumber, IsString, IsBool, IsInt, IsInt64, ..."""
    if kind in ("number", "string", "bool"):
        return {"number": type(value) in (int, float), "string": isinstance(value, bytes),
                "bool": isinstance(value, bool)}[kind]
    low, high = INTS[kind]
    return type(value) is int and low <= value < high


def _add_value(value, dtype, tensor):
    """AddValueToTensor (JT:290-342)."""
    if dtype not in LEAVES:
        raise Status("UNIMPLEMENTED", f"Conversion of JSON Value: {debug_string(value)} to type: "
                                      f"{dtype_string(dtype)}")
    kind, field = LEAVES[dtype]
    if not _fits(value, kind):
        raise invalid(f"JSON Value: {debug_string(value)} Type: {json_type(value)} is not of expected type: "
                      f"{dtype_string(dtype)}")
    if field == "float_val":
        with np.errstate(over="ignore"):
            value = float(np.float32(float(value)))  # GetFloat: static_cast<float>(GetDouble())
    getattr(tensor, field).append(float(value) if field == "double_val" else value)


def _dense_shape(value):
    """GetDenseTensorShape (JT:344-351): sizes along the first elements."""
    shape = []
    while isinstance(value, list) and not isinstance(value, JsonObject):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _fill(value, level, dtype, tensor):
    """FillTensorProto (JT:392-441); returns how many values it added."""
    dims = [d.size for d in tensor.tensor_shape.dim]
    if not isinstance(value, list) or isinstance(value, JsonObject):
        if level != len(dims):
            raise invalid(f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} in the "
                          f"JSON DOM. Expected at level: {len(dims)}")
        if isinstance(value, JsonObject):
            if dtype != types_pb2.DT_STRING:
                raise invalid(f"JSON Value: {debug_string(value)} Type: Object is not of expected type: "
                              f"{dtype_string(dtype)}")
            if not is_base64(value):
                raise invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
            decoded = unbase64(value.get(b"b64"))
            if decoded is None:
                raise invalid("Unable to base64 decode")
            tensor.string_val.append(decoded)
        else:
            _add_value(value, dtype, tensor)
        return 1
    if level >= len(dims):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(dims)}")
    if len(value) != dims[level]:
        raise invalid(f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
                      f"size: {dims[level]}")
    return sum(_fill(item, level + 1, dtype, tensor) for item in value)


def _set_shape(tensor, shape):
    tensor.tensor_shape.Clear()
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)


def _shape_text(shape):
    return "[" + ",".join(map(str, shape)) + "]"


def from_instances(rows, infos):
    """FillTensorMapFromInstancesList (JT:517-608): the row format, one object (or value) per example."""
    if not isinstance(rows[0], JsonObject) and len(infos) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                      "required as per tensorinfo_map")
    objects = isinstance(rows[0], JsonObject) and not is_base64(rows[0])
    names, tensors, shapes = sorted(infos), {}, {}
    for index, row in enumerate(rows):
        if objects != (isinstance(row, JsonObject) and not is_base64(row)):
            raise invalid(f"Expecting object but got list at item {index} of input list" if objects else
                          f"Expecting value/list but got object at item {index} of input list")
        members = [(text(key.split(b"\0")[0]), value) for key, value in row] if objects else [(names[0], row)]
        for name, value in members:  # a duplicate key adds its values again (JT:557-567)
            where = f"{index} key: {name}" if objects else f"{index}"
            try:
                if name not in infos:
                    raise invalid(f"JSON object: does not have named input: {name}")
                tensor = tensors.setdefault(name, tensor_pb2.TensorProto())
                shape = _dense_shape(value)
                _set_shape(tensor, shape)
                size = _fill(value, 0, infos[name].dtype, tensor)
                if name in shapes and math.prod(shapes[name]) != size:
                    raise invalid(f"Expecting tensor size: {math.prod(shapes[name])} but got: {size}")
                if name in shapes and shapes[name] != shape:
                    raise invalid(f"Expecting shape {_shape_text(shapes[name])} but got: "
                                  f"{_shape_text(shape)}")
                shapes.setdefault(name, shape)
            except Status as status:
                raise invalid(f"Failed to process element: {where} of 'instances' list. Error: {status}")
        if objects and sorted({name for name, _ in members}) != names:
            raise invalid(f"Failed to process element: {index} of 'instances' list. JSON object: "
                          f"{debug_string(row)} keys must be equal to: {','.join(names)}")
    for name, tensor in tensors.items():
        tensor.dtype = infos[name].dtype
        _set_shape(tensor, [len(rows), *shapes[name]])
    return tensors


def from_inputs(value, infos):
    """FillTensorMapFromInputsMap (JT:610-652): the columnar format."""
    if not isinstance(value, JsonObject) or is_base64(value):
        if len(infos) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                          "required as per tensorinfo_map")
        value = JsonObject([(sorted(infos)[0].encode("utf-8", "surrogateescape"), value)])
    tensors = {}
    for name in sorted(infos):  # keys the signature does not have are ignored
        item = value.find(name.encode("utf-8", "surrogateescape"))
        if item is None:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        tensor = tensors[name] = tensor_pb2.TensorProto(dtype=infos[name].dtype)
        _set_shape(tensor, _dense_shape(item[1]))
        _fill(item[1], 0, tensor.dtype, tensor)
    return tensors


def predict_request(body, get_infos):
    """FillPredictRequestFromJson (JT:656-700): (signature name, {alias: TensorProto}, row format?).

    `get_infos(signature name)` is the handler's GetInfoMap: the signature's inputs, or a Status.
    """
    document = parse_json(body)
    name = signature_name(document)
    infos = get_infos(name)
    if not infos:
        raise invalid(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    instances, inputs = document.find(b"instances"), document.find(b"inputs")
    if instances is not None and inputs is not None:
        raise invalid(f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one of "
                      "'inputs' or 'instances' keys to exist ")
    if instances is not None:
        rows = instances[1]
        if not isinstance(rows, list) or isinstance(rows, JsonObject):
            raise invalid(f"JSON Value: {debug_string(document)} Expecting 'instances' to be an list/array")
        if not rows:
            raise invalid(f"JSON Value: {debug_string(document)} No values in 'instances' array")
        return name, from_instances(rows, infos), True
    if inputs is not None:
        return name, from_inputs(inputs[1], infos), False
    raise invalid("Missing 'inputs' or 'instances' key")


def _add_feature(value, name, feature):
    """AddValueToFeature (JT:756-810): one JSON value into a tf.train.Feature of a matching kind."""
    def of_kind(kind):
        if feature.WhichOneof("kind") not in (None, kind):
            current = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}
            raise invalid(f"Unexpected element type in feature: {name} expecting type: "
                          f"{current[feature.WhichOneof('kind')]}")
        return getattr(feature, kind).value

    if isinstance(value, bool):
        of_kind("int64_list").append(int(value))
    elif is_base64(value):
        decoded = unbase64(value.get(b"b64"))
        if decoded is None:
            raise invalid("Unable to base64 decode")
        of_kind("bytes_list").append(decoded)
    elif isinstance(value, bytes):
        of_kind("bytes_list").append(value)
    elif type(value) is float:
        of_kind("float_list").append(value)
    elif type(value) is int:
        if value >= 2**63:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        of_kind("int64_list").append(value)
    else:
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")


def _example(value, example):
    """MakeExampleFromJsonObject (JT:812-832); a repeated feature name keeps the last one."""
    if not isinstance(value, JsonObject):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    for key, content in value:
        name = key.split(b"\0")[0].decode("utf-8", "replace")
        feature = feature_pb2.Feature()
        for item in content if type(content) is list else [content]:
            _add_feature(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def examples_request(body, input_proto):
    """FillClassifyRegressRequestFromJson (JT:834-872) into an Input proto; returns the signature name."""
    document = parse_json(body)
    name = signature_name(document)
    context = document.find(b"context")
    if context is not None:
        _example(context[1], input_proto.example_list_with_context.context)
    examples = document.find(b"examples")
    if examples is None:  # the server names classify here for regress requests too
        raise invalid(f"JSON Value: {debug_string(document)} When method is classify, key 'examples' is "
                      "expected and was not found")
    if type(examples[1]) is not list:
        raise invalid(f"JSON Value: {debug_string(document)} Expecting 'examples' value to be an list/array")
    if not examples[1]:
        raise invalid(f"JSON Value: {debug_string(document)} 'examples' value is an empty array")
    listed = input_proto.example_list_with_context if context is not None else input_proto.example_list
    for item in examples[1]:
        _example(item, listed.examples.add())
    return name
