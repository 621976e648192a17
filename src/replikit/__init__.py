"""replikit: database migration and replication as a Python library.

>>> import replikit as rk
>>> task = rk.Task("sqlite:///source.db", "postgresql://app@db/shop")   # doctest: +SKIP
>>> print(task.plan())                                                     # doctest: +SKIP
>>> task.run()                                                             # doctest: +SKIP
"""

import importlib
import sys
import types
import typing

# the errors load with the package (every ``except rk.Error`` needs them, and they import
# nothing); everything else loads on first use (``__getattr__`` below)
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

if typing.TYPE_CHECKING:
    from replikit import transforms
    from replikit.changes import Change, Op
    from replikit.endpoints.base import Capabilities, Endpoint, endpoint, register
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
    from replikit.settings import TaskSettings
    from replikit.shortcuts import copy
    from replikit.task import Plan, Task
    from replikit.validate import Comparison, compare, validate
    from replikit.validation.report import (
        FixResult,
        RowDifference,
        TableValidation,
        ValidationReport,
        ValidationState,
    )

__version__ = "0.1.0"

#: public name -> the module that defines it, imported when the name is first used: ``import
#: replikit`` then costs a few milliseconds and no pipeline, schema or endpoint module, and a
#: program (or ``replikit --help``) pays only for what it touches
_LAZY = {
    "Assessment": "replikit.schema.assessment",
    "Batch": "replikit.pipeline.contracts",
    "Capabilities": "replikit.endpoints.base",
    "Change": "replikit.changes",
    "ChangeCache": "replikit.pipeline.cache",
    "ChangeReader": "replikit.pipeline.contracts",
    "ChangeWriter": "replikit.pipeline.contracts",
    "Checkpoint": "replikit.pipeline.contracts",
    "CheckpointStore": "replikit.pipeline.contracts",
    "Column": "replikit.schema.model",
    "Comparison": "replikit.validate",
    "DiskCache": "replikit.pipeline.cache",
    "Endpoint": "replikit.endpoints.base",
    "ErrorPolicy": "replikit.pipeline.policy",
    "Fidelity": "replikit.schema.convert",
    "Finding": "replikit.schema.findings",
    "FixResult": "replikit.validation.report",
    "KeyRange": "replikit.pipeline.contracts",
    "Kind": "replikit.schema.types",
    "Mappings": "replikit.mapping",
    "Op": "replikit.changes",
    "PgLsn": "replikit.positions",
    "Pipeline": "replikit.pipeline.runner",
    "Plan": "replikit.task",
    "Position": "replikit.positions",
    "Reader": "replikit.pipeline.contracts",
    "RowDifference": "replikit.validation.report",
    "Selection": "replikit.mapping",
    "SqliteSeq": "replikit.positions",
    "Statistics": "replikit.pipeline.stats",
    "StopCondition": "replikit.pipeline.cdc",
    "TableId": "replikit.schema.model",
    "TablePlan": "replikit.schema.convert",
    "TableSchema": "replikit.schema.model",
    "TableState": "replikit.pipeline.stats",
    "TableStats": "replikit.pipeline.stats",
    "TableValidation": "replikit.validation.report",
    "Task": "replikit.task",
    "TaskSettings": "replikit.settings",
    "Type": "replikit.schema.types",
    "Unit": "replikit.pipeline.contracts",
    "ValidationReport": "replikit.validation.report",
    "ValidationState": "replikit.validation.report",
    "Writer": "replikit.pipeline.contracts",
    "compare": "replikit.validate",
    "copy": "replikit.shortcuts",
    "endpoint": "replikit.endpoints.base",
    "register": "replikit.endpoints.base",
    "transforms": "replikit.transforms",
    "validate": "replikit.validate",
}

if not typing.TYPE_CHECKING:  # mypy reads the imports above: a misspelt name stays an error

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'replikit' has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if name == "transforms" else getattr(imported, name)
        globals()[name] = value  # the next use is a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """``replikit`` itself, whose ``validate`` is a function and also a module's name.

    Loading a submodule binds it on its package, so the first ``import replikit.validate``
    (by :mod:`replikit.task`, say) would make ``rk.validate`` that module. Eager imports
    rebound the function right after; lazy ones leave the name to ``__getattr__``.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and name in _LAZY and name != "transforms":
            return  # the module stays in sys.modules under its own name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
