"""Task files: a task as YAML or TOML, the same schema as the Python objects.

.. code-block:: yaml

    source: postgresql://app:${PG_PASSWORD}@db1/shop
    target: sqlite:///copy.db
    migration_type: full-load          # full-load | cdc | full-load-and-cdc
    mappings:
      include: [public.%]
      exclude: [public.audit_%]
      dms: table-mappings.json         # optional: a DMS document (path or inline)
      rules:                           # Mappings methods, in order, with their parameters
        - rename_table: {source: public.users, target: customers}
        - mask: {table: public.users, column: email, kind: fake-email}
        - filter: {table: public.orders, conditions: [[status, "=", paid]]}
    settings:                          # TaskSettings fields
      parallel_tables: 4
      mask_secret: ${MASK_SECRET}
      dms: task-settings.json          # optional: a DMS task-settings document

``${NAME}`` is replaced by environment variable ``NAME`` (``$$`` is a literal ``$``), so
secrets stay out of the file. Everything is checked before anything connects; an error gives
the file, the line and the key. :func:`task_yaml` writes a task back, with its secrets as
variables.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from replikit.errors import ConfigError
from replikit.mapping.filters import Condition
from replikit.mapping.rules import Mappings
from replikit.schema.types import Kind, Type
from replikit.settings import TaskSettings

if TYPE_CHECKING:
    from replikit.task import Task

__all__ = ["TaskFile", "load_task_file", "task_yaml"]

_TOP = ("source", "target", "migration_type", "mappings", "settings")
_MAPPING_KEYS = ("include", "exclude", "dms", "dms_hash", "rules")
#: Mappings methods a task file may call
RULE_METHODS = (
    "rename_schema", "rename_table", "rename_column", "convert_case", "add_prefix",
    "add_suffix", "remove_prefix", "remove_suffix", "replace_prefix", "replace_suffix",
    "remove_column", "keep_columns", "add_column", "add_change_column", "change_type",
    "define_primary_key", "mask", "filter",
)  # fmt: skip
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Path_ = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class TaskFile:
    """A task file, checked: what it says, as replikit objects; ``raw`` is the document as
    written (variables not replaced)."""

    path: str
    source: str
    target: str
    migration_type: str
    mappings: Mappings
    settings: TaskSettings = dataclasses.field(repr=False)
    raw: Mapping[str, Any] = dataclasses.field(repr=False)

    def task(self, **overrides: Any) -> Task:
        """The :class:`~replikit.Task` (``overrides``: ``Task`` keywords that win)."""
        from replikit.task import Task

        kwargs: dict[str, Any] = {
            "migration_type": self.migration_type,
            "mappings": self.mappings,
            "settings": self.settings,
        }
        kwargs.update(overrides)
        source = kwargs.pop("source", self.source)
        target = kwargs.pop("target", self.target)
        task = Task(source, target, **kwargs)
        task._task_file = self
        return task


# -- reading -------------------------------------------------------------------------------------
class _Doc:
    """A parsed document and where each key is (for error messages)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = str(path)
        self.lines: dict[Path_, int] = {}
        self.text = text
        if path.suffix.lower() == ".toml":
            try:
                self.data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from None
            self.toml = True
        else:
            self.toml = False
            self.data = self._yaml(text)
        if not isinstance(self.data, dict):
            raise ConfigError(f"{path}: a task file is a mapping of {', '.join(_TOP)}")

    def _yaml(self, text: str) -> Any:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            self._walk(node, ())
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.path}: not valid YAML: {exc}") from None
        finally:
            loader.dispose()

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self.lines[(*path, str(key.value))] = key.start_mark.line + 1
                self._walk(value, (*path, str(key.value)))
                self.lines[(*path, str(key.value))] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            if self.toml:
                found = self._toml_line(path)
                if found is not None:
                    return found
            path = path[:-1]
        return None

    def _toml_line(self, path: Path_) -> int | None:
        keys = [k for k in path if isinstance(k, str)]
        if not keys:
            return None
        last = re.escape(keys[-1])
        pattern = re.compile(rf"^\s*(\[+\s*)?([\w.\"' -]*\.)?[\"']?{last}[\"']?\s*(=|\])")
        for n, line in enumerate(self.text.splitlines(), 1):
            if pattern.match(line):
                return n
        return None

    def error(self, path: Path_, message: str) -> ConfigError:
        line = self.line(path)
        where = f"{self.path}:{line}" if line is not None else self.path
        key = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in path)
        key = key.replace(".[", "[")
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _interpolate(doc: _Doc, value: Any, path: Path_, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in environ:
                raise doc.error(path, f"environment variable {name} is not set")
            return environ[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(doc, v, (*path, str(k)), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(doc, v, (*path, i), environ) for i, v in enumerate(value)]
    return value


def load_task_file(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> TaskFile:
    """Read and check a task file (YAML, or TOML for a ``.toml`` name); nothing connects.

    Raises:
        ConfigError: the file cannot be read or something in it is wrong: the message gives
            the file, the line and the key.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read task file {file}: {exc.strerror}") from None
    doc = _Doc(file, text)
    env = os.environ if environ is None else environ
    data = _interpolate(doc, doc.data, (), env)
    for key in data:
        if key not in _TOP:
            raise doc.error((key,), f"unknown key; a task file has {', '.join(_TOP)}")
    for key in ("source", "target"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise doc.error((key,), "is required: an endpoint URL")
    migration = data.get("migration_type", "full-load")
    from replikit.task import MIGRATION_TYPES

    if migration not in MIGRATION_TYPES:
        raise doc.error(("migration_type",), f"must be one of {', '.join(MIGRATION_TYPES)}")
    base = file.parent
    mappings = _mappings(doc, data.get("mappings") or {}, base)
    settings = _settings(doc, data.get("settings") or {}, base)
    return TaskFile(str(file), data["source"], data["target"], migration, mappings, settings,
                    doc.data)  # fmt: skip


def _relative(base: Path, value: Any) -> Any:
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        p = Path(value)
        return str(p if p.is_absolute() else base / p)
    return value


def _mappings(doc: _Doc, spec: Any, base: Path) -> Mappings:
    where: Path_ = ("mappings",)
    if isinstance(spec, str):  # a DMS table-mapping file
        spec = {"dms": spec}
    if not isinstance(spec, dict):
        raise doc.error(where, "must be a mapping (include, exclude, dms, rules) or a file")
    for key in spec:
        if key not in _MAPPING_KEYS:
            raise doc.error((*where, key), f"unknown key; use {', '.join(_MAPPING_KEYS)}")
    m = Mappings()
    if "dms" in spec:
        try:
            m = Mappings.from_dms_json(
                _relative(base, spec["dms"]), hash=spec.get("dms_hash", "keyed")
            )
        except ConfigError as exc:
            raise doc.error((*where, "dms"), str(exc)) from None
    for key in ("include", "exclude"):
        patterns = spec.get(key) or []
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise doc.error((*where, key), "must be a list of schema.table patterns")
        for i, pattern in enumerate(patterns):
            schema, dot, table = pattern.partition(".")
            try:
                m = getattr(m, key)(schema, table) if dot else getattr(m, key)("%", schema)
            except ConfigError as exc:
                raise doc.error((*where, key, i), str(exc)) from None
    rules = spec.get("rules") or []
    if not isinstance(rules, list):
        raise doc.error((*where, "rules"), "must be a list of {method: {parameter: value}}")
    for i, item in enumerate(rules):
        m = _call(doc, m, item, (*where, "rules", i))
    return m


def _call(doc: _Doc, m: Mappings, item: Any, where: Path_) -> Mappings:
    if not isinstance(item, dict) or len(item) != 1:
        raise doc.error(where, "a rule is one {method: {parameter: value}} mapping")
    ((name, params),) = item.items()
    if name not in RULE_METHODS:
        raise doc.error((*where, name), f"unknown rule; use one of {', '.join(RULE_METHODS)}")
    if not isinstance(params, dict):
        raise doc.error((*where, name), "parameters must be a mapping")
    method = getattr(m, name)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    signature = inspect.signature(method)
    for key in params:
        if key not in signature.parameters:
            known = ", ".join(signature.parameters)
            raise doc.error((*where, name, key), f"unknown parameter of {name} ({known})")
    for pname, p in signature.parameters.items():
        if pname not in params:
            continue
        value = params[pname]
        if pname == "conditions":
            value = [tuple(c) if isinstance(c, list) else c for c in value or []]
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            if not isinstance(value, list):
                raise doc.error((*where, name, pname), "must be a list")
            args.extend(value)
        elif args or (
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and _before_var(signature, pname)
        ):
            args.append(value)
        else:
            kwargs[pname] = value
    try:
        out: Mappings = method(*args, **kwargs)
        return out
    except TypeError as exc:
        raise doc.error((*where, name), f"bad parameters: {exc}") from None
    except ConfigError as exc:
        raise doc.error((*where, name), str(exc)) from None


def _before_var(signature: inspect.Signature, name: str) -> bool:
    """Whether ``name`` comes before a ``*args`` parameter (so it must be positional)."""
    names = list(signature.parameters)
    var = [n for n, p in signature.parameters.items() if p.kind is inspect.Parameter.VAR_POSITIONAL]
    return bool(var) and names.index(name) < names.index(var[0])


def _settings(doc: _Doc, spec: Any, base: Path) -> TaskSettings:
    where: Path_ = ("settings",)
    if not isinstance(spec, dict):
        raise doc.error(where, "must be a mapping of TaskSettings fields")
    values = dict(spec)
    known = {f.name for f in dataclasses.fields(TaskSettings)}
    for key in values:
        if key not in known and key != "dms":
            raise doc.error((*where, key), "unknown setting (see TaskSettings)")
    dms = values.pop("dms", None)
    try:
        if dms is not None:
            return TaskSettings.from_dms_json(_relative(base, dms), **values)
        return TaskSettings(**values)
    except ConfigError as exc:
        key = exc.setting if exc.setting in values else ("dms" if dms is not None else None)
        raise doc.error((*where, key) if key else where, str(exc)) from None
    except TypeError as exc:
        raise doc.error(where, str(exc)) from None


# -- writing -------------------------------------------------------------------------------------
_DMS_INT = {8: "int1", 16: "int2", 32: "int4", 64: "int8"}


def _type_spec(t: Type) -> str:
    """A type name :func:`replikit.mapping.casts.parse_type` reads back as ``t``."""
    k = t.kind
    if k is Kind.INT:
        return ("u" if t.unsigned else "") + _DMS_INT.get(t.bits or 64, "int8")
    if k is Kind.DECIMAL:
        return "numeric" if t.precision is None else f"numeric({t.precision},{t.scale or 0})"
    if k is Kind.FLOAT:
        return "real4" if t.bits == 32 else "real8"
    if k is Kind.STRING:
        return f"string({t.length})" if t.length is not None else "text"
    if k is Kind.BYTES:
        return f"bytes({t.length})" if t.length is not None else "blob"
    if k is Kind.TIMESTAMP:
        base = "timestamptz" if t.tz else "datetime"
        return f"{base}({t.precision})" if t.precision is not None else base
    if k is Kind.TIME:
        return f"time({t.precision})" if t.precision is not None else "time"
    return {Kind.BOOL: "boolean", Kind.TEXT: "text", Kind.DATE: "date", Kind.UUID: "uuid",
            Kind.JSON: "json"}.get(k, t.describe())  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, Type):
        return _type_spec(value)
    if isinstance(value, Condition):
        return [value.column, value.op, *(_plain(v) for v in value.values)]
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal | date | datetime | time):
        return str(value)
    return value


def _mappings_doc(m: Mappings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dms_include: set[str] = set()
    dms_exclude: set[str] = set()
    if m.dms is not None:
        out["dms"] = m.dms_path if m.dms_path is not None else dict(m.dms)
        again = Mappings.from_dms_json(m.dms)
        dms_include, dms_exclude = set(again.selection.include), set(again.selection.exclude)
    include = [p for p in m.selection.include if p not in dms_include]
    exclude = [p for p in m.selection.exclude if p not in dms_exclude]
    if include:
        out["include"] = include
    if exclude:
        out["exclude"] = exclude
    rules = [
        {name: {k: _plain(v) for k, v in params}}
        for name, params in m.calls
        if name not in ("include", "exclude")
    ]
    if rules:
        out["rules"] = rules
    return out


def _url(url: str, variable: str) -> str:
    return url.replace(":***@", f":${{{variable}}}@")


# settings that may hold a secret: written as the variable a user sets
_SECRET_SETTINGS = {
    "mask_secret": "${REPLIKIT_MASK_SECRET}",
    "control_url": "${REPLIKIT_CONTROL_URL}",  # a URL, maybe with its password
}


def task_yaml(task: Task) -> str:
    """``task`` as a task file (YAML): a task read from a file as it was written; another
    with passwords as ``${REPLIKIT_SOURCE_PASSWORD}`` / ``${REPLIKIT_TARGET_PASSWORD}`` and
    the mask secret as ``${REPLIKIT_MASK_SECRET}``. Custom ``transforms`` cannot be written
    (``ConfigError``)."""
    loaded: TaskFile | None = getattr(task, "_task_file", None)
    if loaded is not None:
        return str(yaml.safe_dump(dict(loaded.raw), sort_keys=False, allow_unicode=True))
    if task.transforms:
        raise ConfigError("a task with Python transforms cannot be written as a task file")
    doc: dict[str, Any] = {
        "source": _url(task.source.url, "REPLIKIT_SOURCE_PASSWORD"),
        "target": _url(task.target.url, "REPLIKIT_TARGET_PASSWORD"),
        "migration_type": task.migration_type,
    }
    mappings = _mappings_doc(task.mappings)
    if mappings:
        doc["mappings"] = mappings
    settings: dict[str, Any] = {}
    default = TaskSettings()
    for f in dataclasses.fields(TaskSettings):
        value = getattr(task.settings, f.name)
        if value != getattr(default, f.name):
            secret = _SECRET_SETTINGS.get(f.name)
            settings[f.name] = secret if secret is not None else _plain(value)
            if isinstance(value, Mapping):
                settings[f.name] = dict(value)
    if settings:
        doc["settings"] = settings
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
