"""Transports: the contract, the registry by URL scheme, and one module per backend (imported lazily)."""

from tdm_messaging.transport.base import Batch, BatchHandler, Capabilities, Delivery, Handler, Transport
from tdm_messaging.transport.registry import SCHEMES, open_transport, register_scheme

__all__ = [
    "SCHEMES",
    "Batch",
    "BatchHandler",
    "Capabilities",
    "Delivery",
    "Handler",
    "Transport",
    "open_transport",
    "register_scheme",
]
