"""The page's HTTP server: the standard library's ThreadingHTTPServer, the static files, the JSON API.

The standard library's server needs no dependency and is enough for the one person a page serves:
one thread per connection, so a slow TensorFlow Serving call never holds up the next slider move. It
writes nothing to disk, and no request (a bad body, a model's refusal, an unexpected error) stops it.
"""

import http.server
import json
import socket
import sys
import traceback
from importlib import resources

from keras_vae.errors import UserError

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
# The addresses only this machine reaches; any other --host opens the page to the network.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DISCARD_FACTOR = 16  # refused bodies up to this many times the limit are read and dropped


def static_file(name):
    """The bytes of a file of the page, shipped in the package (keras_vae/explore/static/)."""
    return (resources.files("keras_vae.explore") / "static" / name).read_bytes()


class Handler(http.server.BaseHTTPRequestHandler):
    """One request: a file of the page, or a call of the API (`server.explorer.answer`)."""

    protocol_version = "HTTP/1.1"  # keep-alive: a slider drag reuses one connection
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (about 40 ms on Linux) on every kept-alive request.
    disable_nagle_algorithm = True
    server_version = "keras-vae-explore"

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, document):
        self._send(status, json.dumps(document, separators=(",", ":")).encode(), "application/json")

    def _allowed_host(self):
        """Whether the Host header names this server, so another site's page cannot reach it by a
        DNS name that resolves to the loopback (DNS rebinding)."""
        allowed = self.server.allowed_hosts
        return allowed is None or self.headers.get("Host", "") in allowed

    def do_GET(self):  # noqa: N802 (http.server's method names)
        if not self._allowed_host():
            return self._json(403, {"error": f"Host {self.headers.get('Host')!r} is not this server."})
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, content_type = STATIC[path]
            return self._send(200, static_file(name), content_type)
        self._api("GET", path, None)

    def do_POST(self):  # noqa: N802
        if not self._allowed_host():
            return self._json(403, {"error": f"Host {self.headers.get('Host')!r} is not this server."})
        limit = self.server.max_body_bytes
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self._json(411, {"error": "A POST needs a Content-Length."})
        if not 0 <= length <= limit:
            self._discard(length)
            return self._json(413, {"error": f"The request is {length} bytes; the most accepted is {limit} "
                                             "(--max-upload-bytes): send a smaller picture."})
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as error:
            return self._json(400, {"error": f"The body is not JSON: {error}."})
        self._api("POST", self.path, body)

    def _discard(self, length):
        """Reads and drops a refused body, so the browser sees the answer rather than a reset; a body
        far over the limit is not read, and the connection closes."""
        if length > DISCARD_FACTOR * self.server.max_body_bytes or length < 0:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _api(self, method, path, body):
        try:
            status, document = self.server.explorer.answer(method, path, body)
        except Exception as error:  # a bug must not stop the page: say so, and keep serving
            traceback.print_exc(file=sys.stderr)
            status, document = 500, {"error": f"The explorer failed: {type(error).__name__}: {error}"}
        self._json(status, document)

    def log_message(self, format, *args):
        """Logs failed requests only: a slider drag makes dozens of requests a second."""

    def log_request(self, code="-", size="-"):
        if isinstance(code, int) and code >= 400:
            sys.stderr.write(f"{self.command} {self.path}: {code}\n")


class ExploreServer(http.server.ThreadingHTTPServer):
    """The server of one `Explorer` (see `make_server`)."""

    daemon_threads = True  # Ctrl-C stops the server without waiting for open connections


def make_server(explorer, host="127.0.0.1", port=0, max_body_bytes=2_000_000, loopback=True):
    """A server of `explorer` bound to host:port (port 0: a free one); call `serve_forever()`.

    Args:
        explorer: An `Explorer`.
        host, port: Where to listen.
        max_body_bytes: The largest request body read; larger ones answer 413.
        loopback: Whether `host` is a loopback address; then only requests naming it are answered.

    Raises:
        UserError: if the server cannot listen there (the port is taken, the host is not this machine's).
    """
    server_class = ExploreServer
    if ":" in host:
        server_class = type("ExploreServer6", (ExploreServer,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((host, port), Handler)
    except (OSError, OverflowError) as error:
        raise UserError(f"Cannot listen on host={host!r} port={port} ({error}): choose another `port`, or "
                        "a `host` of this machine.")
    server.explorer, server.max_body_bytes = explorer, max_body_bytes
    bound = server.server_address[1]
    server.allowed_hosts = ({f"{name}:{bound}" for name in ("127.0.0.1", "localhost", "[::1]")}
                            if loopback else None)
    return server
