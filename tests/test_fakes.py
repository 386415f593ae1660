"""The REST fake answers what TensorFlow Serving answers: bodies, URLs, statuses, paths, numbers.

Each expected answer is the server's, from its source (tensorflow_serving/util/json_tensor.cc with
rapidjson 1.1.0, model_servers/http_rest_api_handler.cc, http_rest_api_util.cc, http_server.cc); the
rapidjson texts and offsets were checked against rapidjson 1.1.0 itself. Loopback only.
"""

import gzip
import http.client
import json

import fake_rest
import fake_serving
import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

SAMPLE = b'{"signature_name": "sample", "inputs": {"n": %s, "seed": %s}}'
PREDICT = "/v1/models/decoder:predict"


@pytest.fixture(scope="module")
def served(fake_root):
    """(core, REST URL, gRPC target) of the fakes serving the decoder and the toy model."""
    core = fake_serving.ModelServer(fake_root, {"decoder": [1], "toy": [1]})
    with fake_rest.rest_server(core) as (url, _), fake_serving.grpc_server(core) as (target, _):
        yield core, url, target
    core.close()


def call(url, method, path, body=b"", headers=None):
    """(HTTP status, headers, body bytes) of one raw request."""
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=30)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error(message):
    """MakeJsonFromStatus (json_tensor.cc:1129-1139): {"error": message} from PrettyWriter."""
    quoted = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return b'{\n    "error": ' + quoted + b"\n}"


def type_error(debug, expected="int32"):
    return f"JSON Value: {debug} Type: Number is not of expected type: {expected}"


BODIES = [  # json_tensor.cc:473-501 ParseJson: kParseIterativeFlag|kParseNanAndInfFlag|kParseStopWhenDoneFlag
    (SAMPLE % (b"2", b"1") + b" trailing {", None),  # StopWhenDone: never read
    (b"\xef\xbb\xbf" + SAMPLE % (b"2", b"1"), None),  # the UTF-8 BOM is skipped
    (b'{"signature_name": "sample", "signature_name": "nope", "inputs": {"n": 2, "seed": 1}}', None),
    *[(SAMPLE % (literal, b"1"), type_error("")) for literal in  # NaN/Inf parse, and cannot be printed
      (b"NaN", b"-NaN", b"Inf", b"-Inf", b"Infinity", b"-Infinity")],
    (SAMPLE % (b"1e400", b"1"), "JSON Parse error: Number too big to be stored in double. at offset: 45"),
    (SAMPLE % (b"1" * 320, b"1"), "JSON Parse error: Number too big to be stored in double. at offset: 45"),
    (SAMPLE % (b"3", b"99999999999999999999"), type_error("100000000000000000000.0", "int64")),
    (SAMPLE % (b"3000000000", b"1"), type_error("3000000000")),
    (SAMPLE % (b"0.30000000000000004", b"1"), type_error("0.30000000000000007")),  # not full precision
    (SAMPLE % (b"1e-7", b"1"), type_error("1e-7")),
    (SAMPLE % (b"1e21", b"1"), type_error("1e21")),
    (SAMPLE % (b"100.0", b"1"), type_error("100.0")),
    (SAMPLE % (b"nan", b"1"), "JSON Parse error: Invalid value. at offset: 46"),
    (SAMPLE % (b"Infinit", b"1"), "JSON Parse error: Invalid value. at offset: 52"),
    (SAMPLE % (b"01", b"1"),
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 46"),
    (SAMPLE % (b"1.", b"1"), "JSON Parse error: Miss fraction part in number. at offset: 47"),
    (SAMPLE % (b"1e", b"1"), "JSON Parse error: Miss exponent in number. at offset: 47"),
    (SAMPLE % (b'"a\x01"', b"1"), "JSON Parse error: Invalid escape character in string. at offset: 47"),
    (b'{"signature_name": "\\ud800"}',
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 20"),
    (b'{"a": "\\u12G4"}', "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 7"),
    (b'{"a": "abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 10"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1,}', "JSON Parse error: Missing a name for object member. at offset: 8"),
    (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
    (b'{"instances": [1, 2,]}', "JSON Parse error: Invalid value. at offset: 20"),
    (b"  ", "JSON Parse error: The document is empty. at offset: 2"),
    (b"", "JSON Parse error: The document is empty"),
    (b"[1,2]", "JSON Value: [1, 2] Is not object"),
    (b'"abc"', 'JSON Value: "abc" Is not object'),
    (b'{"signature_name": "\xff"}', 'Serving signature name: "\udcff" not found in signature def'),
]


@pytest.mark.parametrize(("body", "message"), BODIES)
def test_bodies_are_read_as_rapidjson_reads_them(served, body, message):
    status, headers, answer = call(served[1], "POST", PREDICT, body)
    assert headers["Content-Type"] == "application/json"
    if message is None:
        assert status == 200 and json.loads(answer)["outputs"]
    else:
        assert (status, answer) == (400, error(message))


@pytest.mark.parametrize(("body", "quoted"), [  # JsonValueToDebugString, json_tensor.cc:177-236
    (b'{"instances": {"z": [0.5, 0.5]}}', '{\n    "instances": {\n        "z": [0.5, 0.5]\n    }\n}'),
    (b'{"instances": 7, "x": [' + b", ".join(b"%d" % i for i in range(200)) + b"]}",
     '{\n    "instances": 7,\n    "x": [' + ", ".join(map(str, range(59)))),  # cut at 256 bytes
    (b'{"instances": 5, "a": [1, NaN]}', '{\n    "instances": 5,\n    "a": [1, '),  # NaN stops the text
    (b'{"instances": "\\u001f\\u00e9\xc3\xa9/"}', '{\n    "instances": "\\u001F\xe9\xe9/"\n}'),
    (b'{"instances": {"a": {}, "b": [], "c": [{"d": -0.0}]}}',
     '{\n    "instances": {\n        "a": {},\n        "b": [],\n        "c": [{\n                "d": -0.0\n'
     "            }]\n    }\n}"),
])
def test_quoted_json_is_rapidjsons_pretty_debug_string(served, body, quoted):
    status, _, answer = call(served[1], "POST", PREDICT, body)
    assert (status, answer) == (400, error(f"JSON Value: {quoted} Expecting 'instances' to be an list/array"))


@pytest.mark.parametrize(("encoded", "decoded"), [  # absl::Base64Unescape (json_tensor.cc:377-389)
    ("YWJjZA", b"abcd"), (" YW Jj\nZA== ", b"abcd"), ("YWJjZA..", b"abcd"), ("YWJjZA=", None),
    ("YQ=Y", None)])
def test_base64_inputs_decode_as_abseil_does(served, encoded, decoded):
    body = json.dumps({"signature_name": "echo", "inputs": {"text": [{"b64": encoded}]}}).encode()
    status, _, answer = call(served[1], "POST", "/v1/models/toy:predict", body)
    if decoded is None:
        assert (status, answer) == (400, error("Unable to base64 decode"))
    else:
        outputs = json.loads(answer)["outputs"]
        assert outputs == {"text": [decoded.decode()], "text_bytes": [{"b64": "YWJjZA=="}]}


def test_strings_stay_bytes_and_answers_are_pretty_written(served):
    body = b'{"signature_name": "echo", "inputs": {"text": ["\xc3\xa9\xff", "a\\"\\u0001"]}}'
    status, _, answer = call(served[1], "POST", "/v1/models/toy:predict", body)
    assert status == 200 and answer == (  # MakeColumnarFormatJsonFromTensors: raw bytes, one value a line
        b'{\n    "outputs": {\n        "text": [\n            "\xc3\xa9\xff",\n            "a\\"\\u0001"\n'
        b'        ],\n        "text_bytes": [\n            {\n                "b64": "w6n/"\n            },\n'
        b'            {\n                "b64": "YSIB"\n            }\n        ]\n    }\n}')
    status, _, answer = call(served[1], "POST", "/v1/models/toy:predict",
                             b'{"signature_name": "echo", "instances": ["x", "y"]}')
    assert answer == (  # MakeRowFormatJsonFromTensors: objects start before the single-line option
        b'{\n    "predictions": [\n        {\n            "text": "x",\n            "text_bytes": {\n'
        b'                "b64": "eA=="\n            }\n        },\n        {\n            "text": "y",\n'
        b'            "text_bytes": {\n                "b64": "eQ=="\n            }\n        }\n    ]\n}')


def test_rest_floats_are_written_as_write_decimal_does(served):
    values = b"[0.1, 0.3333333333, 100, 1e6, 1e-5, 16777217, NaN, -Infinity]"
    status, _, answer = call(served[1], "POST", "/v1/models/toy:predict",
                             b'{"signature_name": "floats", "inputs": {"x": %s}}' % values)
    written = json.loads(answer, parse_float=str, parse_int=str, parse_constant=str)["outputs"]
    assert status == 200 and written == {  # json_tensor.cc:124-170: %.6g, else %.9g / %.17g; .0; bare
        "f32": ["0.1", "0.333333343", "100.0", "1e+06", "1e-05", "16777216.0", "NaN", "-Infinity"],
        "f64": ["0.10000000149011612", "0.3333333432674408", "100.0", "1e+06", "9.9999997473787516e-06",
                "16777216.0", "NaN", "-Infinity"]}


def test_duplicate_keys_in_an_instance_append_and_the_tensor_keeps_its_first_values(served):
    for rows, predicted in ((b'[{"x": 1, "x": 2}]', [[1]]),
                            (b'[{"x": 1, "x": 2}, {"x": 3, "x": 4}]', [[1], [2]])):
        status, _, answer = call(served[1], "POST", "/v1/models/toy:predict",
                                 b'{"signature_name": "ints", "instances": %s}' % rows)
        assert status == 200 and [[row["i32"]] for row in json.loads(answer)["predictions"]] == predicted


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_version_beyond_int64_is_a_400_with_no_body(served, method):
    path = "/v1/models/decoder/versions/99999999999999999999" + (":predict" if method == "POST" else "")
    status, headers, answer = call(served[1], method, path, b"{}")  # http_rest_api_util.cc:115-122
    assert (status, headers["Content-Type"], answer) == (400, "application/json", b"")


def test_names_are_percent_decoded_and_unknown_labels_refused_after_the_body(served):
    url = served[1]
    assert call(url, "GET", "/v1/models/deco%64er")[:3:2] == call(url, "GET", "/v1/models/decoder")[:3:2]
    assert call(url, "POST", "/v1/models/deco%64er:predict", SAMPLE % (b"1", b"1"))[0] == 200
    label = "/v1/models/decoder/labels/st%61ble"  # server_core.cc:841-892
    assert call(url, "POST", label + ":predict", SAMPLE % (b"1", b"1"))[::2] == (
        400, error("Unrecognized servable version label: stable"))
    assert call(url, "POST", label + ":predict", b"[")[2] == error(
        "JSON Parse error: Invalid value. at offset: 1")
    assert call(url, "GET", label + "/metadata")[2] == error("Unrecognized servable version label: stable")
    assert call(url, "GET", label)[::2] == call(url, "GET", "/v1/models/decoder")[::2]  # status ignores it


def test_status_documents_and_their_errors(served):
    url = served[1]
    assert call(url, "GET", "/v1/models/decoder")[::2] == (200, (  # MessageToJsonString, add_whitespace
        b'{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE",\n   "status": {\n'
        b'    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}'))
    for path, (status, message) in [  # get_model_status_impl.cc:76-108; http_rest_api_handler.cc:185-189
        ("/v1/models", (400, "Missing model name in request.")),
        ("/v1/models/versions/1", (400, "Missing model name in request.")),
        ("/v1/models/nope", (404, "Could not find any versions of model nope")),
        ("/v1/models/decoder/versions/7", (404, "Could not find version 7 of model decoder")),
        ("/v1/models/decoder?x=1", (404, "Could not find any versions of model decoder?x=1")),
    ]:
        assert call(url, "GET", path)[::2] == (status, error(message)), path
    status, _, answer = call(url, "GET", "/v1/models/decoder/metadata")  # http_rest_api_util.cc:147-201
    assert status == 200 and answer.startswith(b'{\n"model_spec":{\n "name": "decoder",\n "version": "1",')
    assert answer.endswith(b"}\n}\n") and b'\n"metadata": {"signature_def": {\n "signature_def": {' in answer


HTML_404 = b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"


@pytest.mark.parametrize(("method", "path", "headers", "expected"), [  # http_server.cc:140-205, HRH:65-109
    ("GET", "/foo", {}, (404, "text/html", HTML_404)),
    ("GET", "/v1", {}, (404, "text/html", HTML_404)),
    ("GET", "/v1/foo", {}, (400, "application/json", error("Malformed request: GET /v1/foo"))),
    ("GET", "/v1/models/decoder/", {}, (
        400, "application/json", error("Malformed request: GET /v1/models/decoder/"))),
    ("PUT", "/v1/models/decoder", {}, (
        400, "application/json", error("Malformed request: PUT /v1/models/decoder"))),
    ("DELETE", "/V1/models/decoder", {}, (400, "application/json",
                                          error("Malformed request: DELETE /V1/models/decoder"))),
    ("HEAD", "/v1/models/decoder", {}, (400, "application/json", b"")),
    ("POST", "/v1/models/decoder:predict?x=1", {}, (
        400, "application/json", error("Malformed request: POST /v1/models/decoder:predict?x=1"))),
    ("POST", "/v1/models/decoder:PREDICT", {}, (
        400, "application/json", error("Malformed request: POST /v1/models/decoder:PREDICT"))),
    ("GET", "/v1/models/decoder:predict", {}, (
        400, "application/json", error("Malformed request: GET /v1/models/decoder:predict"))),
    ("OPTIONS", "/v1/models/decoder", {"Origin": "http://x"}, (200, "text/html; charset=ISO-8859-1", b"")),
    ("OPTIONS", "/v1/models/decoder", {}, (400, "text/html; charset=ISO-8859-1", b"")),
    ("TRACE", "/v1/models/decoder", {}, (501, "text/html", HTML_404.replace(b"404", b"501").replace(
        b"Not Found", b"Not Implemented"))),
])
def test_paths_and_methods_are_dispatched_as_the_server_does(served, method, path, headers, expected):
    body = b"{}" if method == "POST" else b""
    status, answer_headers, answer = call(served[1], method, path, body, headers)
    assert (status, answer_headers["Content-Type"], answer) == expected
    assert "Access-Control-Allow-Origin" not in answer_headers  # no CORS by default (server.h:54)


def test_bodies_arrive_chunked_or_gzipped_and_every_request_is_answered(served):
    url, body = served[1], SAMPLE % (b"1", b"1")
    assert call(url, "POST", PREDICT, gzip.compress(body), {"Content-Encoding": "gzip"})[0] == 200
    assert call(url, "POST", PREDICT, iter([body[:9], body[9:]]))[0] == 200  # sent chunked
    for garbage in (b"\x00", b"\xff" * 9, b"{" * 10_000, b'{"instances": [' + b"[" * 5000):
        assert call(url, "POST", PREDICT, garbage)[0] == 400
    assert fake_rest.INTERNAL_ERRORS == []


def test_classify_and_regress_are_real_endpoints(served):
    _, url, target = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    metadata = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "decoder"}, metadata_field=["signature_def"]), timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    debug = text_format.MessageToString(signatures.signature_def["serving_default"])  # DebugString()
    missing = "JSON Value: {\n    \"instances\": [[0, 0]]\n} When method is classify, key 'examples' is " \
        "expected and was not found"
    for path, body, message in [  # json_tensor.cc:834-872; classifier.cc; regressor.cc; all 400
        (":classify", b'{"instances": [[0, 0]]}', missing),
        (":regress", b'{"instances": [[0, 0]]}', missing),
        (":classify", b'{"examples": 1}',
         "JSON Value: {\n    \"examples\": 1\n} Expecting 'examples' value to be an list/array"),
        (":classify", b'{"examples": []}',
         "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
        (":classify", b'{"examples": [{"x": 1.5}]}',
         f"No classification inputs found in SignatureDef: {debug}"),
        (":regress", b'{"examples": [{"x": 1.5}]}', f"No regression inputs found in SignatureDef: {debug}"),
        (":regress", b'{"signature_name": "sample", "examples": [{}]}', "Expected one input Tensor."),
        (":classify", b'{"signature_name": "nope", "examples": [{}]}',
         "No signature was found with the name: nope"),
        (":classify", b'{"examples": [{"x": null}]}',
         "Feature: x has element with unexpected JSON type: Null"),
    ]:
        assert call(url, "POST", "/v1/models/decoder" + path, body)[::2] == (400, error(message)), body
    assert call(url, "POST", "/v1/models/nope:regress", b'{"examples": [{}]}')[::2] == (
        404, error("Servable not found for request: Latest(nope)"))
    assert call(url, "POST", "/v1/models/toy:regress",  # MakeJsonFromRegressionResult
                b'{"signature_name": "regress", "examples": [{"x": 1.5}, {"x": [2.0]}]}')[::2] == (
        200, b'{\n    "results": [3.0, 4.0]\n}')
    assert call(url, "POST", "/v1/models/toy:classify",  # the context is merged into each example
                b'{"signature_name": "classify", "context": {"x": 0.0}, "examples": [{}]}')[::2] == (
        200, b'{\n    "results": [[["yes", 0.5], ["no", 0.5]]\n    ]\n}')
