"""Views across dialects: renames from the mappings applied, translated, in dependency order.

:func:`plan_views` turns the source's views into :class:`~replikit.schema.report.ObjectPlan`
entries (kind ``view``) whose ``sql`` is the view's query in the target dialect, with every
table reference pointed at the table's target name and renamed columns renamed. The result is
in dependency order (a view after the views it reads). A view that does not parse, reads a
table or view that is not moved, sits in a dependency cycle, or needs a construct the target
lacks is ``not converted`` with the reason; the others are still created.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from replikit.schema import expressions
from replikit.schema.model import TableId, View
from replikit.schema.report import ObjectPlan, Verdict

__all__ = ["ViewSource", "plan_views"]


@dataclass(frozen=True, slots=True)
class ViewSource:
    """What a view's references resolve to: a moved table's target id and column renames."""

    target: TableId
    columns: Mapping[str, str] = field(default_factory=dict)


def plan_views(
    views: Sequence[View],
    *,
    tables: Mapping[TableId, ViewSource],
    source: str,
    target: str,
    target_id: Callable[[TableId], TableId],
    functions: Collection[str] = (),
) -> list[ObjectPlan]:
    """Plan ``views`` (source dialect ``source``) for dialect ``target``, dependency order.

    ``tables`` maps every moved source table to its target; ``target_id`` names a view's
    target (the mappings' table rules); ``functions`` are the source's own functions (a view
    that calls one is not converted: the function is not, and a target function of the same
    name, such as MySQL's GROUP_CONCAT for Sakila's PostgreSQL aggregate, does not do the same).
    """
    ids = {v.id: target_id(v.id) for v in views}
    known: dict[TableId, ViewSource] = {**tables, **{v: ViewSource(t) for v, t in ids.items()}}
    taken = _target_names(tables, ids)
    drafts: dict[TableId, _Draft] = {}
    for view in views:
        drafts[view.id] = _Draft.of(view, known, views_ids=set(ids), source=source)
        other = taken.get(_fold(ids[view.id]), view.id)
        if other != view.id and drafts[view.id].error is None:
            # e.g. a table renamed by the mappings to the view's name: the view would read
            # itself, or replace the table
            drafts[view.id].error = (
                f"its target name {ids[view.id]} is also {other}'s in the target "
                "(renamed by the mappings?)"
            )
        called = _user_functions(drafts[view.id].tree, {f.lower() for f in functions})
        if called and drafts[view.id].error is None:
            drafts[
                view.id
            ].error = f"calls {', '.join(called)}, the source's own function (not converted)"
    order = _order(drafts)
    out: list[ObjectPlan] = []
    failed: set[TableId] = set()
    for vid in order:
        draft = drafts[vid]
        bad = sorted(str(d) for d in draft.depends if d in failed)
        if draft.error is None and bad:
            draft.error = f"reads view {', '.join(bad)}, which is not converted"
        plan = draft.finish(ids[vid], source=source, target=target)
        if not plan.converted:
            failed.add(vid)
        out.append(plan)
    return out


def _fold(tid: TableId) -> tuple[str, str]:
    return ((tid.schema or "").casefold(), tid.name.casefold())


def _target_names(
    tables: Mapping[TableId, ViewSource], views: Mapping[TableId, TableId]
) -> dict[tuple[str, str], TableId]:
    """Target name (folded) -> the source object that lands there; tables first."""
    out: dict[tuple[str, str], TableId] = {}
    for sid, dest in tables.items():
        out.setdefault(_fold(dest.target), sid)
    for sid, tid in views.items():
        out.setdefault(_fold(tid), sid)
    return out


@dataclass
class _Draft:
    view: View
    tree: exp.Expression | None
    depends: set[TableId]
    error: str | None

    @classmethod
    def of(
        cls,
        view: View,
        known: Mapping[TableId, ViewSource],
        *,
        views_ids: set[TableId],
        source: str,
    ) -> _Draft:
        text = (view.definition or "").strip().rstrip(";").strip()
        if not text:
            return cls(view, None, set(), "the source gave no definition")
        try:
            tree = expressions.parse(text, source)
        except ValueError as exc:
            return cls(view, None, set(), str(exc))
        if isinstance(tree, exp.Create) and isinstance(tree.expression, exp.Expression):
            tree = tree.expression  # SQLite keeps the whole CREATE VIEW statement
        try:
            tree, depends = _retarget(tree, view.id, known, views_ids)
        except _Missing as exc:
            return cls(view, None, set(), str(exc))
        return cls(view, tree, depends, None)

    def finish(self, tid: TableId, *, source: str, target: str) -> ObjectPlan:
        name, definition = str(self.view.id), self.view.definition
        kind = "materialized view" if self.view.materialized else "view"
        if self.error is not None or self.tree is None:
            return ObjectPlan(
                kind, name, Verdict.NOT_CONVERTED, definition, None, self.error, target=tid
            )
        tree, notes = expressions.portable(self.tree), []
        if self.view.materialized and target != "postgresql":
            notes.append(f"created as a plain view: {target} has no materialized views")
        refused = _postgres_refuses(tree) if target == "postgresql" else None
        if refused is not None:
            return ObjectPlan(
                kind, name, Verdict.NOT_CONVERTED, definition, None, refused, target=tid
            )
        if source == "mysql" and target == "postgresql" and _widen_group_by(tree):
            notes.append(
                "GROUP BY extended with the selected columns (MySQL groups by functional "
                "dependency; PostgreSQL needs them listed)"
            )
        try:
            sql = expressions.render(tree, target)
        except ValueError as exc:
            return ObjectPlan(
                kind, name, Verdict.NOT_CONVERTED, definition, None, str(exc), target=tid
            )
        notes += expressions.review_notes(tree)
        verdict = Verdict.REVIEW if notes else Verdict.EXACT
        reason = "; ".join(dict.fromkeys(notes)) or None
        return ObjectPlan(kind, name, verdict, definition, sql, reason, target=tid)


class _Missing(Exception):
    """A view reads an object that is not moved."""


def _user_functions(tree: exp.Expression | None, functions: set[str]) -> list[str]:
    """The names of ``functions`` that ``tree`` calls."""
    if tree is None or not functions:
        return []
    found = []
    for node in tree.find_all(exp.Func):
        names = [node.name] if isinstance(node, exp.Anonymous) else type(node).sql_names()
        found += [f"{n.lower()}()" for n in names if n.lower() in functions]
    return sorted(set(found))


def _find(known: Mapping[TableId, ViewSource], tid: TableId) -> TableId | None:
    if tid in known:
        return tid
    folded = [k for k in known if str(k).lower() == str(tid).lower()]
    return folded[0] if len(folded) == 1 else None


def _retarget(
    tree: exp.Expression,
    view: TableId,
    known: Mapping[TableId, ViewSource],
    views: set[TableId],
) -> tuple[exp.Expression, set[TableId]]:
    """Point table references at their targets, rename columns; return the views read."""
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    depends: set[TableId] = set()
    by_qualifier: dict[str, tuple[str | None, ViewSource]] = {}
    for table in list(tree.find_all(exp.Table)):
        if not table.name or (not table.db and table.name.lower() in ctes):
            continue
        sid = TableId(table.db or view.schema, table.name)
        found = _find(known, sid)
        if found is None:
            found = _find(known, TableId(None, table.name)) if not table.db else None
        if found is None:
            raise _Missing(f"reads {sid}, which is not moved (not selected, or not a table)")
        if found in views:
            depends.add(found)
        dest = known[found]
        alias = table.alias
        old_name = table.name
        table.set("db", exp.to_identifier(dest.target.schema) if dest.target.schema else None)
        table.set("catalog", None)
        table.set("this", exp.to_identifier(dest.target.name))
        by_qualifier[(alias or old_name).lower()] = (None if alias else dest.target.name, dest)
    _rename_columns(tree, by_qualifier)
    return tree, depends


def _rename_columns(
    tree: exp.Expression, by_qualifier: Mapping[str, tuple[str | None, ViewSource]]
) -> None:
    """Rename columns of renamed tables; requalify references made by table name."""
    unqualified: dict[str, str] = {}
    clashes: set[str] = set()
    for _, dest in by_qualifier.values():
        for old, new in dest.columns.items():
            if unqualified.get(old, new) != new:
                clashes.add(old)
            unqualified[old] = new
    for column in list(tree.find_all(exp.Column)):
        qualifier = column.table
        if qualifier:
            entry = by_qualifier.get(qualifier.lower())
            if entry is None:
                continue
            new_table, dest = entry
            if new_table is not None:
                column.set("table", exp.to_identifier(new_table))
                column.set(
                    "db", exp.to_identifier(dest.target.schema) if dest.target.schema else None
                )
                column.set("catalog", None)
            renamed = dest.columns.get(column.name)
        else:
            renamed = unqualified.get(column.name) if column.name not in clashes else None
        if renamed is not None:
            column.set("this", exp.to_identifier(renamed))


def _postgres_refuses(tree: exp.Expression) -> str | None:
    """Why PostgreSQL would refuse ``tree``, for constructs other engines accept."""
    for order in tree.find_all(exp.Order):
        distinct = order.this
        if isinstance(distinct, exp.Distinct) and isinstance(order.parent, exp.AggFunc):
            args = {e.sql() for e in distinct.expressions}
            if any(o.this.sql() not in args for o in order.expressions):
                return (
                    "PostgreSQL needs the ORDER BY of a DISTINCT aggregate among its arguments: "
                    f"{order.parent.sql(dialect='mysql')}"
                )
    return None


def _widen_group_by(tree: exp.Expression) -> bool:
    """Add selected non-aggregated columns to each GROUP BY that lacks them."""
    changed = False
    for select in tree.find_all(exp.Select):
        group = select.args.get("group")
        if group is None:
            continue
        have = {g.sql() for g in group.expressions}
        for column in _bare_columns(select):
            if column.sql() not in have:
                group.append("expressions", column.copy())
                have.add(column.sql())
                changed = True
    return changed


def _bare_columns(select: exp.Select) -> list[exp.Column]:
    """Columns of ``select``'s list and ORDER BY outside aggregates and subqueries."""
    out: list[exp.Column] = []
    aliases = {e.alias for e in select.expressions if e.alias}
    order = select.args.get("order")
    roots = list(select.expressions) + (list(order.expressions) if order else [])
    for root in roots:
        for node in root.walk(prune=lambda n: isinstance(n, (exp.AggFunc, exp.Subquery))):
            if (
                isinstance(node, exp.Column)
                and not (not node.table and node.name in aliases)
                and node.find_ancestor(exp.AggFunc, exp.Subquery, exp.Select) is select
            ):
                out.append(node)
    return out


def _order(drafts: Mapping[TableId, _Draft]) -> list[TableId]:
    """Views in dependency order; views in a cycle are marked and put last."""
    sorter: graphlib.TopologicalSorter[TableId] = graphlib.TopologicalSorter()
    for vid, draft in drafts.items():
        sorter.add(vid, *(d for d in draft.depends if d in drafts))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = [v for v in exc.args[1] if isinstance(v, TableId)]
        names = " -> ".join(str(v) for v in cycle)
        for vid in set(cycle):
            drafts[vid].error = f"in a dependency cycle: {names}"
            drafts[vid].depends = set()
        return _order(drafts)
