"""replikit: database migration and replication as a Python library."""

from replikit.endpoints.base import Endpoint, endpoint
from replikit.errors import (
    CapabilityError,
    ConfigError,
    ConnectError,
    ConversionError,
    DataError,
    DecodeError,
    Error,
    MissingDependencyError,
    PositionLostError,
    SchemaError,
    TaskError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "CapabilityError",
    "ConfigError",
    "ConnectError",
    "ConversionError",
    "DataError",
    "DecodeError",
    "Endpoint",
    "Error",
    "MissingDependencyError",
    "PositionLostError",
    "SchemaError",
    "TaskError",
    "ValidationError",
    "endpoint",
]
