"""A loopback fake of TensorFlow Serving's REST API, as strict as the real server (see fake_serving.py).

Rules come from tensorflow_serving/model_servers/http_server.cc (HS), http_rest_api_handler.cc (HRH),
http_rest_api_util.cc (HRU), the net_http server over libevent 2.1.12, and util/json_tensor.cc, whose
JSON reading and writing are fake_json_tensor.py and fake_json_answers.py. Bodies are bytes until
rapidjson's rules have read them; every request gets an answer, as from the server.
"""

import contextlib
import gzip
import json
import re
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fake_json_answers as answers
import fake_json_tensor
from fake_status import Status, invalid
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

# HS:46-87 ToHTTPStatusCode; anything else is 500.
HTTP_STATUS = {"OK": 200, "CANCELLED": 499, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
               "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
               "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
               "UNAVAILABLE": 503, "UNAUTHENTICATED": 401}
# libevent http.c evhttp_response_phrase_internal: codes outside its table say "Client Error".
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           409: "Conflict", 429: "Client Error", 499: "Client Error", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Time-out"}
# HS:140-149: the dispatcher's path regex (http_rest_api_handler.h), on path + query + fragment.
DISPATCH = re.compile(r"/v1/.*", re.IGNORECASE)
# HRU:31-34 kPredictionApiGegex and kModelStatusApiRegex (RE2's \d is ASCII only).
PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                          r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?", re.IGNORECASE)
ALLOWED_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}  # evhttp_server.cc:114-117
JSON_HEADERS = {"Content-Type": "application/json"}  # HRU:36-38 AddHeaders
INTERNAL_ERRORS = []  # the fake's own failures, answered 500 (a test checks there are none)


def libevent_error(code):
    """evhttp_send_error's page (libevent http.c ERR_FORMAT): HTML, and the connection closes."""
    reason = REASONS.get(code, "Error")
    page = f"<HTML><HEAD>\n<TITLE>{code} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n</BODY></HTML>\n"
    return code, {"Content-Type": "text/html", "Connection": "close"}, page.encode()


def _unescape(text):
    """curl_easy_unescape (HRU:69-88): %XX decoded, '+' kept."""
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "replace")


def parse_model_info(method, path):
    """ParseModelInfo (HRU:90-131): (matched, name, version, label, method or subresource)."""
    match = (PREDICT_PATH if method == "POST" else STATUS_PATH).fullmatch(path) if method in (
        "POST", "GET") else None
    if match is None:
        return False, "", None, None, ""
    name, version, label, last = match.groups()
    if version is not None:
        if int(version) >= 2**63:  # absl::SimpleAtoi into int64_t
            raise invalid(f"Failed to convert version: {version} to numeric.")
        version = int(version)
    label = None if label is None else _unescape(label)
    return True, _unescape(name) if name else "", version, label, last or ""


def _spec(name, version, label):
    """FillModelSpecWithNameVersionAndLabel (HRU:46-67)."""
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def _predict(core, spec, body):
    """ProcessPredictRequest (HRH:160-178) with GetInfoMap (HRH:228-240): the servable is looked up
    after the body is parsed, so a bad body wins over a bad version or label."""
    def infos(signature):
        with core.handle(*core.resolve(spec)) as servable:
            return servable.signature(signature, lambda name: invalid(
                f'Serving signature name: "{name}" not found in signature def')).inputs

    signature, tensors, row_format = fake_json_tensor.predict_request(body, infos)
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.model_spec.signature_name = signature
    for alias, tensor in tensors.items():
        request.inputs[alias].CopyFrom(tensor)
    response = core.run("predict", request, core.options.rest_api_timeout_in_ms)
    return answers.predict_json(response.outputs, row_format)


def _examples(core, spec, body, method):
    """ProcessClassifyRequest / ProcessRegressRequest (HRH:111-158)."""
    module = classification_pb2.ClassificationRequest if method == "classify" else (
        regression_pb2.RegressionRequest)
    request = module(model_spec=spec)
    request.model_spec.signature_name = fake_json_tensor.examples_request(body, request.input)
    response = core.run(method, request, core.options.rest_api_timeout_in_ms)
    write = answers.classification_json if method == "classify" else answers.regression_json
    return write(response.result)


def _status_json(message):
    """ToJsonString (HRU:133-145): MessageToJsonString with add_whitespace."""
    return json_format.MessageToJson(message, indent=1, always_print_fields_with_no_presence=True,
                                     ensure_ascii=False)


def _metadata_json(response):
    """ToJsonString for metadata (HRU:147-201): two documents concatenated by hand."""
    def dump(message):
        return json_format.MessageToJson(message, indent=1, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True, ensure_ascii=False)

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return (f'{{\n"model_spec":{dump(response.model_spec)},\n"metadata": {{"signature_def": '
            f"{dump(signature_map)}}}\n}}\n")


def process_request(core, method, path, body):
    """HttpRestApiHandler::ProcessRequest (HRH:65-109): (status name, headers, body bytes)."""
    try:
        matched, name, version, label, last = parse_model_info(method, path)
    except Status as status:  # returned before MakeJsonFromStatus: no body at all
        return status.code, JSON_HEADERS, b""
    try:
        status = invalid(f"Malformed request: {method} {path}")
        if method == "POST" and matched and last in ("classify", "regress", "predict"):
            spec = _spec(name, version, label)
            text = _predict(core, spec, body) if last == "predict" else _examples(core, spec, body, last)
            return "OK", JSON_HEADERS, text.encode("utf-8", "surrogateescape")
        if method == "GET" and matched:
            if not name:  # HRH:185-189, 209-211
                raise invalid("Missing model name in request.")
            spec = _spec(name, version, label)
            if last == "metadata":
                text = _metadata_json(core.metadata(get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"])))
            else:
                text = _status_json(core.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
            return "OK", JSON_HEADERS, text.encode()
        raise status
    except Status as status:
        return status.code, JSON_HEADERS, answers.error_json(status.message).encode(
            "utf-8", "surrogateescape")


def rest_answer(core, method, path, headers, body):
    """RestApiRequestDispatcher (HS:140-205) under EvHTTPServer: (HTTP status, headers, body bytes)."""
    if method not in ALLOWED_METHODS:
        return libevent_error(501 if method in ("TRACE", "CONNECT") else 400)
    if not DISPATCH.fullmatch(path):
        return libevent_error(404)
    if method == "OPTIONS":  # CORS preflight (HS:170-177): no handler, no body, libevent's content type
        allowed = re.search(r"https?://", headers.get("Origin") or "")
        return (200 if allowed else 400), {"Content-Type": "text/html; charset=ISO-8859-1"}, b""
    code, answer_headers, text = process_request(core, method, path, body)
    return HTTP_STATUS.get(code, 500), answer_headers, b"" if method == "HEAD" else text


def _read_body(handler):
    """The request body as libevent hands it over: chunks joined, gzip undone (net_http)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += handler.rfile.read(size)
            handler.rfile.readline()
    else:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    if "gzip" in (handler.headers.get("Content-Encoding") or ""):
        body = gzip.decompress(body)
    return body


@contextlib.contextmanager
def rest_server(core, port=0):
    """Serves `core`'s REST API on 127.0.0.1; yields (base URL, list of (method, path, body)).

    Each body is recorded as Python's JSON reading of it when it has one, else as the raw bytes.
    """
    received = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one_request(self):
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            try:
                body = _read_body(self)
                try:
                    received.append((self.command, self.path, json.loads(body)))
                except (ValueError, RecursionError):
                    received.append((self.command, self.path, body))
                status, headers, data = rest_answer(core, self.command, self.path, self.headers, body)
            except Exception:  # a defect of the fake itself: still an answer, never a dropped connection
                INTERNAL_ERRORS.append(traceback.format_exc())
                status, headers, data = 500, dict(JSON_HEADERS), answers.error_json(
                    "fake_rest internal error").encode()
            self.send_response(status, REASONS.get(status, "Error"))
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = headers.get("Connection") == "close" or self.close_connection

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
