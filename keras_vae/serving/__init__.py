"""Serving: the signature table, publishing versions, reading them back, and clients for TensorFlow Serving.

Importing this package does not import TensorFlow: it hands on the clients, their pinned sessions and
the signature table; the TensorFlow parts are `keras_vae.serving.publish` (writing versions),
`keras_vae.serving.exported` (reading them, `ExportedVAE`) and `keras_vae.serving.functions`.
"""

from keras_vae.errors import ServingError
from keras_vae.serving.clients import RestClient
from keras_vae.serving.grpc_client import GrpcClient
from keras_vae.serving.sessions import PinnedSession, VersionGone
from keras_vae.serving.signatures import SIGNATURES, Signature

__all__ = ["SIGNATURES", "GrpcClient", "PinnedSession", "RestClient", "ServingError", "Signature",
           "VersionGone"]
