"""AWS DMS JSON: table-mapping documents -> ``Mappings``, task settings -> ``TaskSettings``.

Everything in a document either has a replikit meaning or is refused with a
:class:`~replikit.ConfigError` naming the rule id (or settings group) and the field; nothing
is silently ignored. Values that DMS writes as strings (``"rule-id": "1"``, ``"length":
"64"``) are accepted as strings or numbers.

DMS semantics kept: a table is selected when an ``include`` or ``explicit`` rule matches it and
no ``exclude`` rule does (rule order does not matter); the filters of one selection rule are
ANDed and the conditions inside one filter ORed; when several name rules match one object the
lowest ``rule-id`` applies. ``data-masking-hash-mask`` becomes replikit's keyed hash (HMAC under
the task secret) unless ``hash="dms"`` asks for DMS's unkeyed SHA-256.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from replikit.errors import ConfigError
from replikit.mapping.casts import _named
from replikit.mapping.filters import AllOf, AnyOf, Condition, Predicate
from replikit.mapping.masking import Mask
from replikit.mapping.rules import NAME_ACTIONS, Mappings, Rule, Selection, literal, matches
from replikit.schema.types import Type

__all__ = ["mappings_from_dms", "settings_from_dms"]

_COMMON = {"rule-type", "rule-id", "rule-name"}
_SELECTION_KEYS = _COMMON | {"object-locator", "rule-action", "filters", "load-order"}
_TRANSFORM_KEYS = _COMMON | {
    "rule-target", "object-locator", "rule-action", "value", "old-value", "expression",
    "data-type", "primary-key-def", "before-image-def",
}  # fmt: skip
_FILTER_OPS = {
    "lte": "<=",
    "ste": "<=",
    "gte": ">=",
    "eq": "=",
    "noteq": "!=",
    "between": "between",
    "notbetween": "not between",
    "null": "is null",
    "notnull": "is not null",
}
_MASKS = {
    "data-masking-digits-mask": "digits-mask",
    "data-masking-digits-randomize": "digits-randomize",
    "data-masking-hash-mask": "hash",
}
_COLUMN_ACTIONS = {"remove-column", "include-column", "add-column", "change-data-type", *_MASKS}


def load_json(source: str | os.PathLike[str] | Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON document from a path, JSON text or an already parsed ``dict``."""
    if isinstance(source, Mapping):
        return dict(source)
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} must be a JSON object")
    return doc


class _Rule:
    """One DMS rule being read: typed access to its fields, errors naming it."""

    def __init__(self, raw: Any, index: int) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"table mapping: rules[{index}] is not an object")
        self.raw = raw
        rid = raw.get("rule-id")
        self.where = f"table mapping rule #{index + 1}"
        try:
            self.id = int(str(rid).strip())
        except ValueError:
            raise ConfigError(f"{self.where}: rule-id {rid!r} is not a number") from None
        self.name = str(raw.get("rule-name") or "")
        named = f" {self.name!r}" if self.name else ""
        self.where = f"table mapping rule {self.id}{named}"

    def error(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}, field {field!r}: {message}")

    def text(self, field: str, *, required: bool = True, default: str | None = None) -> str:
        value = self.raw.get(field, default)
        if value is None:
            if required:
                raise self.error(field, "is required")
            return ""
        if not isinstance(value, str | int | float):
            raise self.error(field, f"must be a string, got {type(value).__name__}")
        return str(value)

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.raw:
            if key not in allowed:
                raise self.error(key, "is not supported by replikit here")

    def locator(self, allowed: set[str]) -> dict[str, str]:
        loc = self.raw.get("object-locator")
        if not isinstance(loc, dict):
            raise self.error("object-locator", "is required (an object)")
        for key, value in loc.items():
            if key not in allowed:
                raise self.error(f"object-locator.{key}", "is not supported by replikit")
            if not isinstance(value, str):
                raise self.error(f"object-locator.{key}", "must be a string")
        return dict(loc)


def mappings_from_dms(
    source: str | os.PathLike[str] | Mapping[str, Any], *, hash: str = "keyed"
) -> Mappings:
    """Read a DMS table-mapping document (see the module docs)."""
    if hash not in ("keyed", "dms"):
        raise ConfigError(f"hash must be 'keyed' or 'dms', not {hash!r}")
    doc = load_json(source, "table mapping")
    for key in doc:
        if key != "rules":
            raise ConfigError(f"table mapping: top-level field {key!r} is not supported")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError("table mapping: 'rules' must be a non-empty list")
    rules = [_Rule(r, i) for i, r in enumerate(raw_rules)]
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"table mapping: rule-id {dup[0]} is used by more than one rule")
    include: list[str] = []
    exclude: list[str] = []
    out: list[Rule] = []
    includes: list[tuple[_Rule, str, str, bool]] = []
    for r in sorted(rules, key=lambda r: r.id):
        kind = r.text("rule-type")
        if kind == "selection":
            selected = _selection(r, include, exclude, out)
            if selected is not None:
                includes.append(selected)
        elif kind == "transformation":
            out.append(_transformation(r, hash))
        else:
            raise r.error(
                "rule-type",
                f"{kind!r} is not supported (replikit reads selection and transformation "
                "rules; table-settings, post-processing and object-mapping tune DMS itself "
                "or other targets)",
            )
    if not include:
        raise ConfigError("table mapping: at least one selection rule must include tables")
    _check_overlaps(includes)
    path = (
        None if isinstance(source, Mapping) or str(source).lstrip().startswith("{") else str(source)
    )
    return Mappings(Selection(tuple(include), tuple(exclude)), tuple(out), dms=doc, dms_path=path)


def _selection(
    r: _Rule, include: list[str], exclude: list[str], out: list[Rule]
) -> tuple[_Rule, str, str, bool] | None:
    """Read a selection rule; for an include, (rule, schema, table patterns, has filters)."""
    r.check_keys(_SELECTION_KEYS)
    if "load-order" in r.raw:
        raise r.error(
            "load-order",
            "is not supported: replikit starts the biggest tables first; remove it",
        )
    loc = r.locator({"schema-name", "table-name", "table-type"})
    table_type = loc.get("table-type", "table")
    if table_type != "table":
        raise r.error(
            "object-locator.table-type",
            f"{table_type!r} is not supported: replikit creates source views as views on the "
            "target (after the tables); select tables only",
        )
    schema = loc.get("schema-name") or _missing(r, "object-locator.schema-name")
    table = loc.get("table-name") or _missing(r, "object-locator.table-name")
    action = r.text("rule-action")
    if action == "explicit":  # one table, named exactly: no wildcards
        schema, table = literal(schema), literal(table)
    filters = r.raw.get("filters") or []
    if action == "exclude":
        if filters:
            raise r.error("filters", "filters apply only to include rules")
        exclude.append(f"{schema}.{table}")
        return None
    if action not in ("include", "explicit"):
        raise r.error("rule-action", f"{action!r} is not include, exclude or explicit")
    if filters:
        if "%" in schema + table:
            raise r.error("filters", "filters need an exact schema and table name (no %)")
        schema, table = literal(schema), literal(table)  # exact: '_' is itself
        out.append(
            Rule(r.id, "filter", "table", schema=schema, table=table,
                 predicate=_filters(r, filters), name=r.name)
        )  # fmt: skip
    include.append(f"{schema}.{table}")
    return r, schema, table, bool(filters)


def _check_overlaps(includes: list[tuple[_Rule, str, str, bool]]) -> None:
    """A table that an include rule with filters names and an include rule without filters
    also matches: which of its rows to load is ambiguous (DMS does not say), so refused."""
    for fr, fs, ft, filtered in includes:
        if not filtered:
            continue
        for ur, us, ut, other in includes:
            if other or not (matches(us, _unescape(fs)) and matches(ut, _unescape(ft))):
                continue
            raise fr.error(
                "filters",
                f"the table is also selected, without filters, by {ur.where}: whether all its "
                "rows or only the filtered ones load is ambiguous; narrow that rule (an "
                "exclude, or a more exact pattern) or drop these filters",
            )


def _unescape(pattern: str) -> str:
    return pattern.replace("[_]", "_").replace("[%]", "%").replace("[[]", "[")


def _missing(r: _Rule, field: str) -> str:
    raise r.error(field, "is required")


def _filters(r: _Rule, filters: Any) -> Predicate:
    if not isinstance(filters, list):
        raise r.error("filters", "must be a list")
    groups: list[Predicate] = []
    for i, f in enumerate(filters):
        where = f"filters[{i}]"
        if not isinstance(f, dict):
            raise r.error(where, "must be an object")
        for key in f:
            if key not in ("filter-type", "column-name", "filter-conditions"):
                raise r.error(f"{where}.{key}", "is not supported by replikit")
        if f.get("filter-type", "source") != "source":
            raise r.error(f"{where}.filter-type", "only 'source' filters exist")
        column = f.get("column-name")
        if not isinstance(column, str) or not column:
            raise r.error(f"{where}.column-name", "is required")
        conds = f.get("filter-conditions")
        if not isinstance(conds, list) or not conds:
            raise r.error(f"{where}.filter-conditions", "must be a non-empty list")
        groups.append(AnyOf(tuple(_condition(r, f"{where}.filter-conditions[{j}]", column, c)
                                  for j, c in enumerate(conds))))  # fmt: skip
    return AllOf(tuple(groups))


def _condition(r: _Rule, where: str, column: str, c: Any) -> Condition:
    if not isinstance(c, dict):
        raise r.error(where, "must be an object")
    op_name = c.get("filter-operator")
    op = _FILTER_OPS.get(str(op_name))
    if op is None:
        raise r.error(
            f"{where}.filter-operator",
            f"{op_name!r} is not one of {', '.join(_FILTER_OPS)}",
        )
    fields = {"filter-operator"}
    if op in ("between", "not between"):
        fields |= {"start-value", "end-value"}
        values: tuple[Any, ...] = (c.get("start-value"), c.get("end-value"))
    elif op in ("is null", "is not null"):
        values = ()
    else:
        fields.add("value")
        values = (c.get("value"),)
    for key in c:
        if key not in fields:
            raise r.error(f"{where}.{key}", f"is not a field of operator {op_name!r}")
    if any(v is None for v in values):
        raise r.error(
            where, f"operator {op_name!r} needs {', '.join(sorted(fields - {'filter-operator'}))}"
        )
    return Condition(column, op, tuple(values))


def _transformation(r: _Rule, hash_mode: str) -> Rule:
    r.check_keys(_TRANSFORM_KEYS)
    target = r.text("rule-target")
    action = r.text("rule-action")
    if target in ("table-tablespace", "index-tablespace"):
        raise r.error("rule-target", f"{target!r} is for Oracle targets only")
    if target not in ("schema", "table", "column"):
        raise r.error("rule-target", f"{target!r} is not schema, table or column")
    if "before-image-def" in r.raw or action == "add-before-image-columns":
        raise r.error(
            "rule-action" if action == "add-before-image-columns" else "before-image-def",
            "before-image columns are not supported",
        )
    if "expression" in r.raw and action != "add-column":
        raise r.error("expression", "is only read on add-column rules")
    loc = r.locator({"schema-name", "table-name", "column-name", "data-type"})
    schema = loc.get("schema-name") or _missing(r, "object-locator.schema-name")
    table = loc.get("table-name", "%") if target != "schema" else "%"
    column = loc.get("column-name", "%")
    if target == "schema" and set(loc) - {"schema-name"}:
        raise r.error("object-locator", "a schema rule names only schema-name")
    if target != "schema" and "table-name" not in loc:
        raise r.error("object-locator.table-name", "is required")
    if "data-type" in loc and action != "change-data-type":
        raise r.error("object-locator.data-type", "is only read on change-data-type rules")
    base: dict[str, Any] = {"schema": schema, "table": table, "name": r.name}
    if action in NAME_ACTIONS:
        return _name_rule(r, action, target, column, base)
    if action in _COLUMN_ACTIONS and target != "column":
        raise r.error("rule-target", f"{action} needs rule-target 'column'")
    handler = _ACTIONS.get(action)
    if handler is None:
        raise r.error("rule-action", f"{action!r} is not supported")
    return handler(r, column, base, loc, hash_mode)


def _name_rule(r: _Rule, action: str, target: str, column: str, base: dict[str, Any]) -> Rule:
    allowed = {
        "rename": {"value"},
        "replace-prefix": {"value", "old-value"},
        "replace-suffix": {"value", "old-value"},
        "convert-lowercase": set(),
        "convert-uppercase": set(),
    }.get(action, {"value"})
    for key in ("value", "old-value", "data-type", "primary-key-def"):
        if key in r.raw and key not in allowed:
            raise r.error(key, f"is not read by {action}")
    value = r.text("value") if "value" in allowed else None
    old = r.text("old-value") if "old-value" in allowed else None
    if target == "column" and action == "rename" and "%" in column:
        raise r.error("object-locator.column-name", "rename names one column: no wildcards")
    return Rule(r.id, action, target, column=column if target == "column" else "%",
                value=value, old_value=old, **base)  # fmt: skip


def _data_type(r: _Rule, field: str) -> Type:
    spec = r.raw.get(field)
    if not isinstance(spec, dict):
        raise r.error(field, "is required (an object with type, length, precision, scale)")
    for key in spec:
        if key not in ("type", "length", "precision", "scale"):
            raise r.error(f"{field}.{key}", "is not a data-type field")

    def number(key: str) -> int | None:
        value = spec.get(key)
        if value in (None, ""):
            return None
        try:
            return int(str(value))
        except ValueError:
            raise r.error(f"{field}.{key}", f"{value!r} is not a number") from None

    name = str(spec.get("type") or "").lower()
    length, precision, scale = number("length"), number("precision"), number("scale")
    first = length if name in ("string", "wstring", "bytes") else precision
    t = _named(name, first, scale if name == "numeric" else None) if name else None
    if t is None:
        raise r.error(f"{field}.type", f"{spec.get('type')!r} is not a supported DMS type")
    return t


def _remove(r: _Rule, column: str, base: dict[str, Any], loc: Any, h: str) -> Rule:
    return Rule(r.id, r.text("rule-action"), "column", column=column, **base)


def _add_column(r: _Rule, column: str, base: dict[str, Any], loc: Any, h: str) -> Rule:
    if "column-name" in loc:
        raise r.error("object-locator.column-name", "add-column names the new column in value")
    expression = r.raw.get("expression")
    if expression is not None and not isinstance(expression, str):
        raise r.error("expression", "must be a string")
    return Rule(r.id, "add-column", "column", value=r.text("value"),
                type=_data_type(r, "data-type"), expression=expression, **base)  # fmt: skip


def _change_type(r: _Rule, column: str, base: dict[str, Any], loc: Any, h: str) -> Rule:
    return Rule(r.id, "change-data-type", "column", column=column,
                type=_data_type(r, "data-type"), of_type=loc.get("data-type"), **base)  # fmt: skip


def _primary_key(r: _Rule, column: str, base: dict[str, Any], loc: Any, h: str) -> Rule:
    spec = r.raw.get("primary-key-def")
    if not isinstance(spec, dict):
        raise r.error("primary-key-def", "is required (name, origin, columns)")
    for key in spec:
        if key not in ("name", "origin", "columns"):
            raise r.error(f"primary-key-def.{key}", "is not a primary-key-def field")
    origin = spec.get("origin", "primary-key")
    if origin not in ("primary-key", "unique-index"):
        raise r.error("primary-key-def.origin", f"{origin!r} is not primary-key or unique-index")
    cols = spec.get("columns")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
        raise r.error("primary-key-def.columns", "must be a non-empty list of column names")
    if "%" in base["schema"] + base["table"]:
        raise r.error("object-locator", "define-primary-key names one table: no wildcards")
    base = {**base, "schema": literal(base["schema"]), "table": literal(base["table"])}
    return Rule(r.id, "define-primary-key", "table", columns=tuple(cols),
                unique=origin == "unique-index", value=spec.get("name"), **base)  # fmt: skip


def _mask(r: _Rule, column: str, base: dict[str, Any], loc: Any, hash_mode: str) -> Rule:
    action = r.text("rule-action")
    kind = _MASKS[action]
    if kind == "hash" and hash_mode == "dms":
        kind = "dms-hash"
    value = r.text("value") if kind == "digits-mask" else None
    if kind != "digits-mask" and "value" in r.raw:
        raise r.error("value", f"is not read by {action}")
    try:
        mask = Mask(kind, value)
    except ConfigError as exc:
        raise r.error("value", str(exc)) from None
    return Rule(r.id, "mask", "column", column=column, mask=mask, **base)


_ACTIONS: dict[str, Callable[[_Rule, str, dict[str, Any], Any, str], Rule]] = {
    "remove-column": _remove,
    "include-column": _remove,
    "add-column": _add_column,
    "change-data-type": _change_type,
    "define-primary-key": _primary_key,
    **dict.fromkeys(_MASKS, _mask),
}


# -- task settings ---------------------------------------------------------------------------------
_PREP = {"DROP_AND_CREATE": "drop-and-create", "TRUNCATE_BEFORE_LOAD": "truncate",
         "DO_NOTHING": "do-nothing"}  # fmt: skip
_MB = 1024 * 1024


def settings_from_dms(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~replikit.TaskSettings` keywords a DMS task-settings document sets."""
    doc = load_json(source, "task settings")
    out: dict[str, Any] = {}
    for group, values in doc.items():
        handler = _GROUPS.get(group)
        if handler is None:
            raise ConfigError(
                f"task settings: group {group!r} is not supported by replikit "
                f"(supported: {', '.join(sorted(_GROUPS))})"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            if group in _SCALARS:
                continue
            raise ConfigError(f"task settings: {group} must be an object")
        handler(group, values, out)
    return out


def _keys(group: str, values: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    """Refuse keys of ``group`` that replikit does not know, and values it cannot honour:
    ``known`` maps each key to the values replikit accepts (``None``: any)."""
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"task settings: {group}.{key} is not supported by replikit")
        allowed = known[key]
        if allowed is not None and value not in allowed:
            raise ConfigError(
                f"task settings: {group}.{key}={value!r} is not supported by replikit "
                f"(accepted: {', '.join(repr(a) for a in allowed)})"
            )


def _full_load(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    _keys(group, v, {
        "TargetTablePrepMode": tuple(_PREP), "MaxFullLoadSubTasks": None, "CommitRate": None,
        "CreatePkAfterFullLoad": None, "TransactionConsistencyTimeout": None,
        "StopTaskCachedChangesApplied": (False,), "StopTaskCachedChangesNotApplied": (False,),
    })  # fmt: skip
    if "TargetTablePrepMode" in v:
        out["target_table_prep_mode"] = _PREP[v["TargetTablePrepMode"]]
    if "MaxFullLoadSubTasks" in v:
        out["parallel_tables"] = _int(group, "MaxFullLoadSubTasks", v["MaxFullLoadSubTasks"])


def _target_metadata(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    _keys(group, v, {
        "TargetSchema": ("",), "SupportLobs": None, "FullLobMode": None, "LobChunkSize": None,
        "LimitedSizeLobMode": None, "LobMaxSize": None, "InlineLobMaxSize": None,
        "LoadMaxFileSize": None, "BatchApplyEnabled": (True, False),
        "TaskRecoveryTableEnabled": (False,), "ParallelLoadThreads": (0,),
        "ParallelLoadBufferSize": None, "ParallelLoadQueuesPerThread": None,
        "ParallelApplyThreads": (0,), "ParallelApplyBufferSize": None,
        "ParallelApplyQueuesPerThread": None,
    })  # fmt: skip
    if "BatchApplyEnabled" in v:
        out["batch_apply"] = bool(v["BatchApplyEnabled"])


def _tuning(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    _keys(group, v, dict.fromkeys(
        ("BatchApplyPreserveTransaction", "BatchApplyTimeoutMin", "BatchApplyTimeoutMax",
         "BatchApplyMemoryLimit", "BatchSplitSize", "MinTransactionSize", "CommitTimeout",
         "MemoryLimitTotal", "MemoryKeepTime", "StatementCacheSize", "RecoveryTimeout")
    ))  # fmt: skip
    split = _int(group, "BatchSplitSize", v.get("BatchSplitSize", 0))
    if split > 0:
        out["batch_changes"] = split
    if "MemoryLimitTotal" in v:
        out["queue_memory_bytes"] = _int(group, "MemoryLimitTotal", v["MemoryLimitTotal"]) * _MB


_ERROR_DEFAULTS: dict[str, Any] = {
    "DataErrorPolicy": ("LOG_ERROR", "STOP_TASK"),
    "DataTruncationErrorPolicy": ("LOG_ERROR", "STOP_TASK"),
    "DataErrorEscalationPolicy": None,
    "DataErrorEscalationCount": None,
    "EventErrorPolicy": None,
    "TableErrorPolicy": ("SUSPEND_TABLE",),
    "TableErrorEscalationPolicy": None,
    "TableErrorEscalationCount": None,
    "RecoverableErrorCount": None,
    "RecoverableErrorInterval": None,
    "RecoverableErrorThrottling": None,
    "RecoverableErrorThrottlingMax": None,
    "RecoverableErrorStopRetryAfterThrottlingMax": None,
    "ApplyErrorDeletePolicy": ("IGNORE_RECORD",),
    "ApplyErrorInsertPolicy": ("LOG_ERROR", "INSERT_RECORD"),
    "ApplyErrorUpdatePolicy": ("LOG_ERROR",),
    "ApplyErrorEscalationPolicy": None,
    "ApplyErrorEscalationCount": None,
    "ApplyErrorFailOnTruncationDdl": (False,),
    "FailOnNoTablesCaptured": None,
    "FailOnTransactionConsistencyBreached": None,
    "FullLoadIgnoreConflicts": None,
    "DataMaskingErrorPolicy": ("STOP_TASK",),
}


def _errors(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    # replikit's behaviour: a bad row stops its table, an insert conflict upserts, a delete of
    # a missing row is a no-op; policies that differ are refused until replikit has them
    _keys(group, v, _ERROR_DEFAULTS)


def _validation(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    known: dict[str, Any] = dict.fromkeys(
        ("ValidationMode", "ThreadCount", "PartitionSize", "FailureMaxCount",
         "TableFailureMaxCount", "RecordFailureDelayInMinutes",
         "RecordFailureDelayLimitInMinutes", "RecordSuspendDelayInMinutes",
         "HandleCollationDiff", "SkipLobColumns", "ValidationPartialLobSize",
         "ValidationQueryCdcDelaySeconds", "MaxKeyColumnSize")
    )  # fmt: skip
    known.update({"EnableValidation": (False,), "ValidationOnly": (False,)})
    _keys(group, v, known)


def _accepted(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Groups that tune DMS itself (logging, buffers, control tables): nothing to do."""


def _before_image(group: str, v: Mapping[str, Any], out: dict[str, Any]) -> None:
    _keys(group, v, {"EnableBeforeImage": (False,), "FieldName": None, "ColumnFilter": None})


def _int(group: str, key: str, value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ConfigError(f"task settings: {group}.{key}={value!r} is not a number") from None


_SCALARS = {"CtrlStreamBufferSizeInMB", "FailTaskWhenCleanTaskResourceFailed"}
_GROUPS: dict[str, Callable[[str, Mapping[str, Any], dict[str, Any]], None]] = {
    "FullLoadSettings": _full_load,
    "TargetMetadata": _target_metadata,
    "ChangeProcessingTuning": _tuning,
    "ErrorBehavior": _errors,
    "ValidationSettings": _validation,
    "BeforeImageSettings": _before_image,
    "Logging": _accepted,
    "ControlTablesSettings": _accepted,
    "StreamBufferSettings": _accepted,
    "ChangeProcessingDdlHandlingPolicy": _accepted,
    "CharacterSetSettings": _accepted,
    "LoopbackPreventionSettings": _accepted,
    "PostProcessingRules": _accepted,
    "TTSettings": _accepted,
    **dict.fromkeys(_SCALARS, _accepted),
}
