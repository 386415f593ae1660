"""Statuses as TensorFlow Serving passes them around: a code name and the server's message."""

import grpc

# Status codes by number, as TensorFlow and gRPC share them (absl::StatusCode).
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Status(Exception):
    """A non-OK status: `code` is the code name (INVALID_ARGUMENT, ...), `message` the server's text.

    str() is absl::Status::ToString(): "INVALID_ARGUMENT: <message>".
    """

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def invalid(message):
    """An INVALID_ARGUMENT status (errors::InvalidArgument)."""
    return Status("INVALID_ARGUMENT", message)
