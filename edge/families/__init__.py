"""Streaming model families. Importing this package registers them all."""
from .base import REGISTRY, Family, StreamingModel, get_family  # noqa: F401
from . import conformer, lstm, transducer  # noqa: F401  (registration side effect)
