"""tensorflow_model_server itself, faked: the ServerCore loads first, and only then do the ports open.

model_servers/server.cc (Server::BuildAndStart, lines 332-446) creates the ServerCore, which waits with
no time limit for every model's first version, before it builds the gRPC server and starts the REST
one; a client meanwhile finds nothing listening. main.cc:341-346 prints "Failed to start server.
Error: <status>" and exits when that fails.

    server = Server(grpc_port, rest_api_port, model_config_file=path, file_system_poll_wait_seconds=0.05)
    thread = threading.Thread(target=server.build_and_start)  # blocks while the models load
"""

import contextlib
import threading

import fake_rest
import fake_serving


class Server:
    """The model server on 127.0.0.1 `grpc_port` and `rest_api_port` (0: any free port).

    Args:
        root, served, **flags: as for `fake_serving.ModelServer` (flags: `fake_serving.Options`).
    """

    def __init__(self, grpc_port=0, rest_api_port=0, root=None, served=None, **flags):
        self.ports = (grpc_port, rest_api_port)
        self.core = fake_serving.ModelServer(root, served, start=False, **flags)
        self.error, self.urls = None, None
        self.started, self._stack = threading.Event(), contextlib.ExitStack()

    def build_and_start(self):
        """Loads (blocking), then opens the ports; sets `error` to the Status it fails with, if any."""
        try:
            self.core.start()
            target, self.service = self._stack.enter_context(fake_serving.grpc_server(self.core,
                                                                                      self.ports[0]))
            url, self.received = self._stack.enter_context(fake_rest.rest_server(self.core, self.ports[1]))
            self.urls = (target, url)
        except fake_serving.Status as status:
            self.error = status
        finally:
            self.started.set()

    def close(self):
        self.core.close()
        self._stack.close()
