"""SQL-language functions offered in the target's dialect, for a person to review.

A PostgreSQL ``LANGUAGE sql`` function whose body is one expression (``SELECT expr`` without
``FROM``, or ``RETURN expr``) translates like a CHECK: :func:`function_plan` prints it as a
MySQL ``CREATE FUNCTION ... RETURN expr``, a DuckDB ``CREATE MACRO``, or PostgreSQL's own
definition. The result is never created by a task: its verdict is ``review`` and its ``sql``
is the statement to run once a person has read it (functions are code a view or an
application calls by name; a silent difference would change their results). Anything else
(procedural bodies, queries over tables, sets, OUT parameters) is not converted, with the
reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError

from replikit.schema import expressions
from replikit.schema.model import Routine
from replikit.schema.report import ObjectPlan, Verdict

__all__ = ["function_plan"]

_HEADER = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?P<name>.+?)\((?P<args>.*?)\)\s*"
    r"RETURNS\s+(?P<returns>.+?)\s*\n(?P<options>.*?)"
    # a string body (AS $tag$ ... $tag$), or an SQL-standard one (RETURN expr, BEGIN ATOMIC)
    r"(?:\bAS\s+(?P<tag>\$[^$]*\$)(?P<body>.*)(?P=tag)|^(?P<standard>(?:RETURN|BEGIN)\b.*))",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)
_NOT_CREATED = "translated, not created: review it, then run it in the target"


@dataclass(frozen=True, slots=True)
class _Signature:
    name: str
    params: tuple[tuple[str, str], ...]  # (name, PostgreSQL type)
    returns: str
    immutable: bool
    strict: bool
    body: str


def function_plan(routine: Routine, *, source: str, target: str) -> ObjectPlan | None:
    """The review entry of an SQL function the target can be given, a ``not converted`` one
    naming why not, or ``None`` when ``routine`` is no SQL function of a source this reads."""
    if routine.kind != "function" or routine.language != "sql" or source != "postgresql":
        return None
    name = str(routine.id)
    try:
        sig = _signature(routine.definition or "")
        sql, notes = _translate(sig, routine, target)
    except ValueError as exc:
        reason = f"sql function: {exc}; recreate it in {target} from its definition"
        return ObjectPlan("function", name, Verdict.NOT_CONVERTED, routine.definition, None, reason)
    reason = "; ".join([_NOT_CREATED, *notes])
    return ObjectPlan("function", name, Verdict.REVIEW, routine.definition, sql, reason)


def _signature(definition: str) -> _Signature:
    found = _HEADER.search(definition)
    if found is None:
        raise ValueError("its definition is not a CREATE FUNCTION this reads")
    returns = found["returns"].strip()
    if re.match(r"(SETOF|TABLE)\b", returns, re.IGNORECASE):
        raise ValueError(f"it returns a set ({returns})")
    options = found["options"].upper()
    return _Signature(
        name=found["name"].strip().split(".")[-1].strip('"'),
        params=_params(found["args"]),
        returns=returns,
        immutable="IMMUTABLE" in options,
        strict="STRICT" in options or "RETURNS NULL ON NULL INPUT" in options,
        body=(found["body"] or found["standard"]).strip().rstrip(";").strip(),
    )


def _params(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for i, part in enumerate(p.strip() for p in _top_level_split(text) if p.strip()):
        words = part.split()
        mode = words[0].upper()
        if mode in ("OUT", "INOUT", "VARIADIC") or " DEFAULT " in f" {part.upper()} ":
            raise ValueError(f"parameter {part!r} ({mode.lower()} or default) has no equivalent")
        if mode == "IN":
            words = words[1:]
            part = " ".join(words)
        try:
            exp.DataType.build(part, dialect="postgres")
            out.append((f"p{i + 1}", part))  # an unnamed parameter: $1 is p1
        except (SqlglotError, ValueError):  # a name comes first
            out.append((words[0].strip('"'), " ".join(words[1:])))
    return tuple(out)


def _top_level_split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _translate(sig: _Signature, routine: Routine, target: str) -> tuple[str, list[str]]:
    if target == "postgresql":
        return routine.definition or "", []
    if target not in ("mysql", "duckdb"):
        raise ValueError(f"{target} has no SQL functions")
    body = _expression(sig)
    translated = expressions.translate(
        body.sql(dialect="postgres"), source="postgresql", target=target
    )
    if translated.sql is None:
        raise ValueError(f"its expression is not converted ({translated.reason})")
    notes = [translated.reason] if translated.reason else []
    if sig.strict:
        notes.append(f"STRICT in PostgreSQL (NULL in, NULL out); {target} calls it with NULLs")
    q = '"' if target == "duckdb" else "`"
    params = [name for name, _ in sig.params]
    if target == "duckdb":
        args = ", ".join(f"{q}{n}{q}" for n in params)
        return f"CREATE MACRO {q}{sig.name}{q}({args}) AS {translated.sql}", notes
    args = ", ".join(f"{q}{n}{q} {_type(t, target)}" for n, t in sig.params)
    kind = "DETERMINISTIC" if sig.immutable else "NOT DETERMINISTIC READS SQL DATA"
    head = f"CREATE FUNCTION {q}{sig.name}{q}({args}) RETURNS {_type(sig.returns, target)}"
    return f"{head} {kind} RETURN {translated.sql}", notes


def _expression(sig: _Signature) -> exp.Expression:
    """The body's one expression, ``$n`` replaced by the parameter names."""
    text = re.sub(r"^RETURN\s+", "SELECT ", sig.body, flags=re.IGNORECASE)
    tree = expressions.parse(text, "postgresql")
    if not isinstance(tree, exp.Select) or tree.find(exp.From) or len(tree.expressions) != 1:
        raise ValueError("its body is a query, not one expression")
    names = [name for name, _ in sig.params]

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter) and node.this.is_int:
            n = int(node.this.name)
            if not 1 <= n <= len(names):
                raise ValueError(f"it uses ${n}, which is not a parameter")
            return exp.column(names[n - 1], quoted=True)
        return node

    expr: exp.Expression = tree.expressions[0].unalias().transform(swap)
    return expr


def _type(pg_type: str, target: str) -> str:
    try:
        built = exp.DataType.build(pg_type, dialect="postgres")
    except (SqlglotError, ValueError) as exc:
        raise ValueError(f"type {pg_type} is not converted") from exc
    if target == "mysql" and built.is_type(exp.DataType.Type.DECIMAL) and not built.expressions:
        # PostgreSQL's numeric without a precision holds any value; MySQL's DECIMAL is (10, 0)
        return "DECIMAL(65, 30)"
    return built.sql(dialect=target)
