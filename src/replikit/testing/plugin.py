"""The replikit pytest plugin (registered through the ``pytest11`` entry point).

Installed with replikit, active in every pytest run; no ``conftest.py`` needed. Fixtures:

* ``replikit_clone`` (per test): a factory, ``replikit_clone(source, to=..., tables=...,
  subset=..., follow_children=..., limits=..., mask=..., scope=...)`` returning a
  :class:`~replikit.testing.clone.Clone` (``.url``, ``.endpoint``, ``.rows``). ``scope="test"``
  (the default) gives each call a fresh copy dropped after the test; ``scope="session"`` one
  shared copy for the session;
* ``replikit_source`` (session): the configured source URL;
* ``replikit_postgresql`` / ``replikit_mysql`` (session): throwaway servers
  (:mod:`replikit.testing.servers`), started on first use, removed at the end.

Options (command line over ini file; ``${VAR}`` and ``${VAR:-default}`` expand from the
environment): ``--replikit-source`` / ``replikit_source``, ``--replikit-refresh`` (re-read the
sources even when the clone cache has them), ``replikit_cache_dir`` (default
``.replikit_cache`` in the rootdir), ``replikit_row_cap`` (the default row cap of a subset).

Under pytest-xdist each worker has its own servers, template and copies; the cache directory
is shared (entries are written to a temporary name and renamed into place).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from replikit.errors import ConfigError
from replikit.mapping import Mappings

__all__ = ["expand_env", "masks"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SERVERS = {"postgresql": "replikit_postgresql", "mysql": "replikit_mysql"}
_ALIASES = {"postgres": "postgresql", "pg": "postgresql", "mariadb": "mysql"}


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with ``${VAR}`` / ``${VAR:-default}`` replaced from ``env`` (``os.environ``).

    Raises:
        ConfigError: a variable without a default is not set (named in the message).
    """
    env = os.environ if env is None else env

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (used in {text!r})")

    return _VAR.sub(one, text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replikit", "replikit database clones")
    group.addoption(
        "--replikit-source",
        dest="replikit_source",
        metavar="URL",
        help="source database of replikit_clone (${VAR} expands from the environment)",
    )
    group.addoption(
        "--replikit-refresh",
        dest="replikit_refresh",
        action="store_true",
        help="read clone sources again even when the clone cache holds them",
    )
    parser.addini("replikit_source", "source database URL of replikit_clone (${VAR} expands)")
    parser.addini("replikit_cache_dir", "where extracted clones are cached", default="")
    parser.addini(
        "replikit_mask_secret",
        "key of the clones' masks (${VAR} expands; default: REPLIKIT_MASK_SECRET)",
        default="",
    )
    parser.addini("replikit_row_cap", "default most rows of a clone subset", default="100000")


def masks(mask: Mappings | Mapping[str, str] | None) -> Mappings | None:
    """``mask`` as mask rules: a :class:`~replikit.Mappings` as it is, or
    ``{"table.column": "kind"}`` (``schema.table.column``; ``%`` wildcards)."""
    if mask is None or isinstance(mask, Mappings):
        return mask
    if not isinstance(mask, Mapping):
        raise ConfigError(
            "mask must be {'table.column': 'mask kind'} or a replikit.Mappings, "
            f"got {type(mask).__name__}"
        )
    rules = Mappings()
    for path, kind in mask.items():
        table, dot, column = path.rpartition(".")
        if not dot or not table:
            raise ConfigError(f"mask {path!r}: write 'table.column' or 'schema.table.column'")
        rules = rules.mask(table, column, kind)
    return rules


def _worker(config: pytest.Config) -> str:
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    return str(workerinput.get("workerid", "master"))


@pytest.fixture(scope="session")
def replikit_source(pytestconfig: pytest.Config) -> str:
    """The source URL named by ``--replikit-source`` or the ``replikit_source`` ini option."""
    text = pytestconfig.getoption("replikit_source") or pytestconfig.getini("replikit_source")
    url = expand_env(str(text)) if text else ""
    if not url.strip():
        given = f" ({text!r} is empty)" if text else ""
        raise ConfigError(
            f"no clone source{given}: pass replikit_clone(url, ...), run pytest "
            "--replikit-source URL, or set replikit_source in the pytest ini options"
        )
    return url


@pytest.fixture(scope="session")
def replikit_postgresql(pytestconfig: pytest.Config, _replikit_cloner: Any) -> Iterator[Any]:
    """A throwaway PostgreSQL server for the session (``REPLIKIT_TEST_PG_URL``: an existing
    one); see :mod:`replikit.testing.servers`."""
    from replikit.testing._copies import PgTarget
    from replikit.testing.servers import postgresql_server

    with postgresql_server(_worker(pytestconfig)) as server:
        try:
            yield server
        finally:
            _replikit_cloner.close(PgTarget(server).name)


@pytest.fixture(scope="session")
def replikit_mysql(pytestconfig: pytest.Config, _replikit_cloner: Any) -> Iterator[Any]:
    """A throwaway MariaDB server for the session (``REPLIKIT_TEST_MYSQL_URL``: an existing
    one); see :mod:`replikit.testing.servers`."""
    from replikit.testing._copies import MysqlTarget
    from replikit.testing.servers import mysql_server

    with mysql_server(_worker(pytestconfig)) as server:
        try:
            yield server
        finally:
            _replikit_cloner.close(MysqlTarget(server).name)


@pytest.fixture(scope="session")
def _replikit_cloner(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from replikit.testing.clone import Cloner

    configured = pytestconfig.getini("replikit_cache_dir")
    cache = Path(expand_env(str(configured))) if configured else None
    if cache is None:
        cache = pytestconfig.rootpath / ".replikit_cache"
    elif not cache.is_absolute():
        cache = pytestconfig.rootpath / cache
    cloner = Cloner(
        cache,
        tmp_path_factory.mktemp("replikit"),
        refresh=bool(pytestconfig.getoption("replikit_refresh")),
    )
    try:
        yield cloner
    finally:
        cloner.close()


def _target(request: pytest.FixtureRequest, cloner: Any, to: str) -> Any:
    from replikit.testing import _copies

    kind = _ALIASES.get(to, to)
    if kind == "sqlite":
        return _copies.SqliteTarget(cloner.work_dir / "sqlite")
    if kind in _SERVERS:
        server = request.getfixturevalue(_SERVERS[kind])
        return (_copies.PgTarget if kind == "postgresql" else _copies.MysqlTarget)(server)
    scheme = to.partition(":")[0].partition("+")[0]
    if "://" not in to:
        raise ConfigError(
            f"to={to!r}: use 'sqlite', 'postgresql', 'mysql' or the URL of a server "
            "where clones may be created"
        )
    from replikit.testing import servers

    url = expand_env(to)
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url

        return _copies.SqliteTarget(Path(make_url(url).database or cloner.work_dir).parent)
    if scheme in ("postgresql", "postgres"):
        return _copies.PgTarget(servers.PgServer(url))
    if scheme in ("mysql", "mariadb"):
        return _copies.MysqlTarget(servers.MysqlServer(url))
    raise ConfigError(f"to={to!r}: clones go to SQLite, PostgreSQL or MySQL/MariaDB")


@pytest.fixture
def replikit_clone(
    request: pytest.FixtureRequest, _replikit_cloner: Any, pytestconfig: pytest.Config
) -> Iterator[Callable[..., Any]]:
    """Clone a database into this test: ``replikit_clone(source, to="sqlite", ...)``.

    See :func:`replikit.testing.clone_factory` for the arguments.
    """
    from replikit.testing.clone import Clone, CloneRequest, refuse_scope
    from replikit.testing.subset import Subset

    made: list[tuple[Any, Clone]] = []
    cap = int(pytestconfig.getini("replikit_row_cap"))

    def clone(
        source: str | None = None,
        *,
        to: str = "sqlite",
        tables: Sequence[str] = (),
        subset: Mapping[str, Any] | None = None,
        follow_children: Sequence[str] = (),
        limits: Mapping[str, int] | None = None,
        row_cap: int | None = None,
        unreached: str = "empty",
        mask: Mappings | Mapping[str, str] | None = None,
        mask_secret: str | None = None,
        scope: str = "test",
    ) -> Clone:
        refuse_scope(scope)
        if isinstance(tables, str):
            tables = (tables,)
        url = expand_env(source) if source else request.getfixturevalue("replikit_source")
        spec = None
        if subset is not None or follow_children or limits:
            if not subset:
                raise ConfigError("follow_children and limits need subset={table: predicate}")
            spec = Subset(
                dict(subset),
                tuple(follow_children),
                dict(limits or {}),
                row_cap if row_cap is not None else cap,
                unreached,  # type: ignore[arg-type]
            )
        secret = mask_secret or pytestconfig.getini("replikit_mask_secret") or None
        req = CloneRequest(
            url, tuple(tables), spec, masks(mask), expand_env(secret) if secret else None
        )
        target = _target(request, _replikit_cloner, to)
        made_clone: Clone = _replikit_cloner.clone(req, target, scope, made)
        return made_clone

    try:
        yield clone
    finally:
        for target, c in reversed(made):
            c.endpoint.close()
            target.drop(c.url)
