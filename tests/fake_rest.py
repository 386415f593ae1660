"""A loopback fake of TensorFlow Serving's REST API, as strict as the real server (see fake_serving.py).

The rules come from tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc,
http_server.cc and util/json_tensor.cc; the JSON is typed by the signature's dtypes and never coerced.
"""

import base64
import contextlib
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
from fake_serving import Status, invalid
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

# model_servers/http_server.cc: ToHTTPStatusCode.
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503}
# model_servers/http_rest_api_util.cc: kPredictionApiGegex and kModelStatusApiRegex.
PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                          r":(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?")

# DataTypeString() of the dtypes json_tensor.cc converts, by DataType enum.
DTYPE_NAMES = {tf.float32.as_datatype_enum: "float", tf.float64.as_datatype_enum: "double",
               tf.int32.as_datatype_enum: "int32", tf.int64.as_datatype_enum: "int64",
               tf.string.as_datatype_enum: "string"}
INT_RANGES = {"int32": 2**31, "int64": 2**63}


def _debug(value):
    """JsonValueToDebugString: the value written back as compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def _json_type(value):
    """JsonTypeString."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_base64(value):
    """IsValBase64Object: an object with one key, "b64", holding a string."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, dtype):
    """AddValueToTensor and JsonDecodeBase64Object: one JSON value as `dtype`, never coerced."""
    name = DTYPE_NAMES.get(dtype)
    type_error = invalid(f"JSON Value: {_debug(value)} Type: {_json_type(value)} "
                         f"is not of expected type: {name}")
    if isinstance(value, dict):
        if name != "string":
            raise type_error
        if not _is_base64(value):
            raise invalid(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid("Unable to base64 decode")
    if name is None:
        raise Status("UNIMPLEMENTED", f"Conversion of JSON Value: {_debug(value)} to type: {dtype}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in ("float", "double") and number:
        return value
    if name in INT_RANGES and isinstance(value, int) and not isinstance(value, bool) and (
            -INT_RANGES[name] <= value < INT_RANGES[name]):
        return value
    if name == "string" and isinstance(value, str):
        return value.encode()
    raise type_error


def _shape(value):
    """GetDenseTensorShape: the sizes along the first elements of nested lists."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _fill(value, shape, dtype, level=0):
    """FillTensorProto: the leaves of `value` in order, checking every list against `shape`."""
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid(f"JSON Value: {_debug(value)} found at incorrect level: {level + 1} in the JSON "
                          f"DOM. Expected at level: {len(shape)}")
        return [_leaf(value, dtype)]
    if level >= len(shape):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise invalid(f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
                      f"size: {shape[level]}")
    return [leaf for item in value for leaf in _fill(item, shape, dtype, level + 1)]


def _tensor(leaves, shape, dtype):
    numpy_dtype = object if DTYPE_NAMES[dtype] == "string" else tf.dtypes.as_dtype(dtype).as_numpy_dtype
    return tf.make_tensor_proto(np.array(leaves, numpy_dtype).reshape(shape), dtype=dtype)


def _from_instances(rows, infos):
    """FillTensorMapFromInstancesList: the row format, one object (or value) per example."""
    names = sorted(infos)
    if not isinstance(rows[0], dict) and len(infos) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as "
                      "multiple input tensors required as per tensorinfo_map")
    objects = isinstance(rows[0], dict) and not _is_base64(rows[0])
    leaves, shapes = {}, {}
    for index, row in enumerate(rows):
        if objects != (isinstance(row, dict) and not _is_base64(row)):
            wanted, got = ("object", "list") if objects else ("value/list", "object")
            raise invalid(f"Expecting {wanted} but got {got} at item {index} of input list")
        for name, value in (row.items() if objects else [(names[0], row)]):
            where = f"{index} key: {name}" if objects else f"{index}"
            try:
                if name not in infos:
                    raise invalid(f"JSON object: does not have named input: {name}")
                shape = _shape(value)
                values = _fill(value, shape, infos[name].dtype)
                if name in shapes and len(values) != math.prod(shapes[name]):
                    raise invalid(f"Expecting tensor size: {math.prod(shapes[name])} "
                                  f"but got: {len(values)}")
                if name in shapes and shape != shapes[name]:
                    raise invalid(f"Expecting shape [{','.join(map(str, shapes[name]))}] "
                                  f"but got: [{','.join(map(str, shape))}]")
            except Status as status:
                raise invalid(f"Failed to process element: {where} of 'instances' list. "
                              f"Error: {status}")
            shapes[name] = shape
            leaves.setdefault(name, []).extend(values)
        if objects and sorted(row) != names:
            raise invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                          f"object: {_debug(row)} keys must be equal to: {','.join(names)}")
    return {name: _tensor(leaves[name], [len(rows), *shapes[name]], infos[name].dtype) for name in leaves}


def _from_inputs(value, infos):
    """FillTensorMapFromInputsMap: the columnar format, one value (or object of values) for the batch."""
    if not isinstance(value, dict) or _is_base64(value):
        if len(infos) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as "
                          "multiple input tensors required as per tensorinfo_map")
        value = {next(iter(infos)): value}
    tensors = {}
    for name, info in infos.items():  # keys the signature does not have are ignored
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        shape = _shape(value[name])
        tensors[name] = _tensor(_fill(value[name], shape, info.dtype), shape, info.dtype)
    return tensors


def _to_json(value, as_base64):
    """AddTensorValues: nested lists; strings base64-encoded when the alias ends in `_bytes`."""
    if isinstance(value, np.ndarray) and value.ndim:
        return [_to_json(item, as_base64) for item in value]
    value = value.item() if isinstance(value, np.ndarray | np.generic) else value
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()} if as_base64 else value.decode(errors="replace")
    return value


def response_json(outputs, row_format):
    """MakeJsonFromTensors: {"predictions": rows} or {"outputs": ...}; a lone output loses its name."""
    arrays = {name: tf.make_ndarray(proto) for name, proto in sorted(outputs.items())}
    values = {name: _to_json(array, array.dtype == object and name.endswith("_bytes"))
              for name, array in arrays.items()}
    if not row_format:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    sizes = set()
    for name, array in arrays.items():
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if sizes and array.shape[0] not in sizes:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                          f"expecting: {sizes.pop()}")
        sizes.add(array.shape[0])
    rows = [{name: value[i] for name, value in values.items()} for i in range(sizes.pop())]
    return {"predictions": rows if len(values) > 1 else [next(iter(row.values())) for row in rows]}


def rest_predict(core, model_spec, body):
    """ProcessPredictRequest, with FillPredictRequestFromJson; returns the JSON answer."""
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)  # rapidjson with kParseNanAndInfFlag: NaN and Infinity parse
    except ValueError as error:
        raise invalid(f"JSON Parse error: {error.msg} at offset: {error.pos}")
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {_debug(document)} Is not object")
    if "signature_name" in document:
        if not isinstance(document["signature_name"], str):
            raise invalid(f"JSON Value: {_debug(document)} not formatted correctly. "
                          "'signature_name' key must be a string value.")
        model_spec.signature_name = document["signature_name"]
    # http_rest_api_handler.cc, GetInfoMap: an unknown signature fails here, before Predict.
    _, _, meta_graph = core.bundle(model_spec)
    name = model_spec.signature_name or "serving_default"
    if name not in meta_graph.signature_def:
        raise invalid(f'Serving signature name: "{name}" not found in signature def')
    infos = meta_graph.signature_def[name].inputs
    if "instances" in document and "inputs" in document:
        raise invalid(f"JSON Value: {_debug(document)} Not formatted correctly expecting only one of "
                      "'inputs' or 'instances' keys to exist ")
    if "instances" not in document and "inputs" not in document:
        raise invalid("Missing 'inputs' or 'instances' key")
    request = predict_pb2.PredictRequest(model_spec=model_spec)
    if "instances" in document:
        if not isinstance(document["instances"], list):
            raise invalid(f"JSON Value: {_debug(document)} Expecting 'instances' to be "
                          "an list/array")
        if not document["instances"]:
            raise invalid(f"JSON Value: {_debug(document)} No values in 'instances' array")
        tensors = _from_instances(document["instances"], infos)
    else:
        tensors = _from_inputs(document["inputs"], infos)
    for key, proto in tensors.items():
        request.inputs[key].CopyFrom(proto)
    return response_json(core.predict(request).outputs, "instances" in document)


def _dict(message):
    """MessageToJsonString with the options the server sets (proto field names, default values)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def rest_answer(core, method, path, body):
    """HttpRestApiHandler::ProcessRequest: (HTTP status, JSON text); errors are {"error": message}."""
    try:
        predict, status = PREDICT_PATH.fullmatch(path), STATUS_PATH.fullmatch(path)
        match = predict if method == "POST" else status if method == "GET" else None
        if match is None or (method == "POST" and match.group(4) != "predict") or not match.group(1):
            raise invalid(f"Malformed request: {method} {path}")
        model, version, label = match.group(1), match.group(2), match.group(3)
        spec = model_pb2.ModelSpec(name=model)
        if version is not None:
            spec.version.value = int(version)
        if label is not None:  # server_core.cc: labels need --allow_version_labels_for_unavailable_models
            raise invalid("ModelSpec has 'version_label' set, but it is not currently "
                          "allowed by the server.")
        if method == "POST":
            answer = rest_predict(core, spec, body)
        elif match.group(4) == "metadata":
            # http_rest_api_util.cc, ToJsonString: the model spec and the unpacked SignatureDefMap.
            response = core.metadata(get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=spec, metadata_field=["signature_def"]))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            answer = {"model_spec": _dict(response.model_spec),
                      "metadata": {"signature_def": _dict(signature_map)}}
        else:
            answer = core.status(model, None if version is None else int(version))
        return 200, json.dumps(answer, indent=4)
    except Status as status:
        return HTTP_STATUS.get(status.code, 500), json.dumps({"error": status.message}, indent=4)


@contextlib.contextmanager
def rest_server(core):
    """Serves `core`'s REST API on 127.0.0.1; yields (base URL, list of (method, path, JSON body))."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            received.append((self.command, self.path, json.loads(body) if body else None))
            status, text = rest_answer(core, self.command, self.path, body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
