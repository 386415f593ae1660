"""Serving: the signature table, publishing versions, reading them back, and clients for TensorFlow Serving.

Importing this package does not import TensorFlow: it hands on the clients and the
signature table; the TensorFlow parts are `keras_vae.serving.publish` (writing versions),
`keras_vae.serving.exported` (reading them, `ExportedVAE`) and `keras_vae.serving.functions`.
"""

from keras_vae.errors import ServingError
from keras_vae.serving.clients import GrpcClient, RestClient
from keras_vae.serving.signatures import SIGNATURES, Signature

__all__ = ["SIGNATURES", "GrpcClient", "RestClient", "ServingError", "Signature"]
