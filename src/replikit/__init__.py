"""replikit: database migration and replication as a Python library.

>>> import replikit as rk
>>> task = rk.Task("sqlite:///source.db", "postgresql://app@db/shop")   # doctest: +SKIP
>>> print(task.plan())                                                     # doctest: +SKIP
>>> task.run()                                                             # doctest: +SKIP
"""

from replikit import transforms
from replikit.changes import Change, Op
from replikit.endpoints.base import Capabilities, Endpoint, endpoint, register
from replikit.errors import (
    AccessError,
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
    StoppedError,
    TableDdlError,
    TableNotFoundError,
    TaskError,
    TransientError,
    ValidationError,
)
from replikit.mapping import Mappings, Selection
from replikit.pipeline.cache import ChangeCache, DiskCache
from replikit.pipeline.cdc import StopCondition
from replikit.pipeline.contracts import (
    Batch,
    ChangeReader,
    ChangeWriter,
    Checkpoint,
    CheckpointStore,
    KeyRange,
    Reader,
    Unit,
    Writer,
)
from replikit.pipeline.policy import ErrorPolicy
from replikit.pipeline.runner import Pipeline
from replikit.pipeline.stats import Statistics, TableState, TableStats
from replikit.positions import PgLsn, Position, SqliteSeq
from replikit.schema.assessment import Assessment
from replikit.schema.convert import Fidelity, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.types import Kind, Type
from replikit.shortcuts import copy
from replikit.task import Plan, Task, TaskSettings
from replikit.validate import Comparison, compare, validate
from replikit.validation.report import (
    FixResult,
    RowDifference,
    TableValidation,
    ValidationReport,
    ValidationState,
)

__version__ = "0.1.0"

__all__ = [
    "AccessError",
    "Assessment",
    "Batch",
    "Capabilities",
    "CapabilityError",
    "Change",
    "ChangeCache",
    "ChangeReader",
    "ChangeWriter",
    "Checkpoint",
    "CheckpointStore",
    "Column",
    "Comparison",
    "ConfigError",
    "ConnectError",
    "ConversionError",
    "DataError",
    "DecodeError",
    "DiskCache",
    "Endpoint",
    "Error",
    "ErrorPolicy",
    "Fidelity",
    "Finding",
    "FixResult",
    "KeyRange",
    "Kind",
    "Mappings",
    "MissingDependencyError",
    "Op",
    "PgLsn",
    "Pipeline",
    "Plan",
    "Position",
    "PositionLostError",
    "Reader",
    "RowDifference",
    "SchemaError",
    "Selection",
    "SqliteSeq",
    "Statistics",
    "StopCondition",
    "StoppedError",
    "TableDdlError",
    "TableId",
    "TableNotFoundError",
    "TablePlan",
    "TableSchema",
    "TableState",
    "TableStats",
    "TableValidation",
    "Task",
    "TaskError",
    "TaskSettings",
    "TransientError",
    "Type",
    "Unit",
    "ValidationError",
    "ValidationReport",
    "ValidationState",
    "Writer",
    "compare",
    "copy",
    "endpoint",
    "register",
    "transforms",
    "validate",
]
