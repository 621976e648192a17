"""A Griffe extension for the docs site: Sphinx roles in docstrings become links.

replikit's docstrings are Google style (what mkdocstrings renders) but name other objects with
Sphinx roles (``:class:`~replikit.Error```, ``:meth:`stop```). Rendered as they are, a reader
sees the role's markup. This extension rewrites each role, when the docs site is built, into an
optional cross-reference: a link where the object is documented on the site, plain code where
it is not (so a role naming a private helper never breaks ``mkdocs build --strict``). A
reST ``::`` that introduces an indented example becomes ``:``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(?P<target>[^`]+)`")
LITERAL_INTRO = re.compile(r"(?<=\S)::(?=\n\n)")


def _identifier(obj: Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj`` (``name`` itself when it does not resolve)."""
    if name.startswith("replikit"):
        return name
    head, dot, rest = name.partition(".")
    scope: Any = obj
    while scope is not None:
        try:
            return str(scope.resolve(name))
        except Exception:  # griffe raises NameResolutionError, or AttributeError on odd objects
            member = getattr(scope, "members", {}).get(head)
            if member is not None:  # a sibling method or attribute: :meth:`stop`
                return f"{member.path}{dot}{rest}"
            scope = scope.parent
    return name


def _rewrite(obj: Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = match["target"].strip()
        if "<" in target and target.endswith(">"):  # :class:`title <path>`
            title, _, target = target[:-1].partition("<")
            title = title.strip()
        else:
            title = ""
        short = target.startswith("~")
        target = target.lstrip("~.")
        if not title:
            title = target.rsplit(".", 1)[-1] if short else target
        ident = html.escape(_identifier(obj, target), quote=True)
        return f'<autoref identifier="{ident}" optional><code>{html.escape(title)}</code></autoref>'

    return LITERAL_INTRO.sub(":", ROLE.sub(link, text))


class SphinxRoles(Extension):
    """Rewrites Sphinx roles in every docstring into optional autorefs cross-references."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = _rewrite(obj, obj.docstring.value)
