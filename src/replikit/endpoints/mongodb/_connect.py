"""MongoDB URLs and the endpoint's one client; pymongo's errors translated here.

The URL goes to pymongo as it is written (multi-host seed lists, ``replicaSet``, ``tls*``,
``authSource`` and every other URI option), less the options replikit itself takes
(``mode``, ``sample_size``, ...: :data:`OWN_OPTIONS`). One ``MongoClient`` per endpoint,
made on first use (it is thread-safe and pools its connections), decoding with
:data:`codec options <codec>`: aware UTC datetimes, standard UUIDs, dates Python cannot hold
kept as ``DatetimeMS`` instead of failing.
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from replikit.endpoints.base import hide_secret, mask_url, require
from replikit.errors import ConfigError, ConnectError, DataError, Error, PositionLostError

__all__ = ["OWN_OPTIONS", "Client", "MongoUrl", "driver", "parse_url", "translated"]

#: endpoint options that may be given in the URL query (not passed to pymongo)
OWN_OPTIONS: Final = frozenset(
    {"mode", "sample_size", "flatten_depth", "batch_size", "write_batch", "overflow",
     "timeout_ms", "transactions"}
)  # fmt: skip
_URL = re.compile(r"^(?P<scheme>mongodb(?:\+srv)?)://(?P<rest>[^/?]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?$",
                  re.IGNORECASE)  # fmt: skip
#: server error codes: lost change-stream history, fatal stream errors, cursor gone
HISTORY_LOST: Final = frozenset({286, 280, 136})
#: "The $changeStream stage is only supported on replica sets"
NO_CHANGE_STREAMS: Final = frozenset({40573})
#: a snapshot read at a cluster time older than the server keeps history for
SNAPSHOT_TOO_OLD: Final = 239
DUPLICATE_KEY: Final = 11000


def driver() -> Any:
    """The ``pymongo`` module (MissingDependencyError with the pip hint when absent)."""
    return require("pymongo", package="pymongo", extra="mongodb", purpose="The MongoDB endpoint")


@dataclass(frozen=True, slots=True)
class MongoUrl:
    """A MongoDB URL split into what pymongo gets and what replikit takes."""

    uri: str
    database: str | None
    hosts: tuple[str, ...]
    password: str | None
    options: dict[str, str]


def parse_url(url: str) -> MongoUrl:
    """``mongodb://[user:pw@]host[:port][,host...]/[database][?options]`` (or
    ``mongodb+srv://``); replikit's own query options are taken out."""
    match = _URL.match(url)
    if match is None:
        raise ConfigError(
            f"not a MongoDB URL: {mask_url(url)!r}; expected mongodb://host[:port][,host2]/db"
            " or mongodb+srv://cluster.example.net/db"
        )
    rest = match["rest"]
    userinfo, at, hostlist = rest.rpartition("@")
    if not hostlist:
        raise ConfigError(f"the MongoDB URL {mask_url(url)!r} names no host")
    password = None
    if at and ":" in userinfo:
        password = urllib.parse.unquote(userinfo.partition(":")[2])
    path = (match["path"] or "/")[1:]
    database = urllib.parse.unquote(path) or None
    own: dict[str, str] = {}
    kept: list[str] = []
    for part in (match["query"] or "").split("&"):
        if not part:
            continue
        name = urllib.parse.unquote(part.partition("=")[0])
        if name in OWN_OPTIONS:
            own[name] = urllib.parse.unquote(part.partition("=")[2])
        else:
            kept.append(part)
    uri = f"{match['scheme']}://{rest}/{match['path'][1:] if match['path'] else ''}"
    if kept:
        uri += "?" + "&".join(kept)
    return MongoUrl(uri, database, tuple(h.lower() for h in hostlist.split(",")), password, own)


def codec() -> Any:
    """pymongo codec options: aware UTC dates, standard UUIDs, out-of-range dates kept."""
    import datetime as dt

    from bson.binary import UuidRepresentation
    from bson.codec_options import CodecOptions, DatetimeConversion

    return CodecOptions(
        tz_aware=True,
        tzinfo=dt.UTC,
        uuid_representation=UuidRepresentation.STANDARD,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )


class Client:
    """The endpoint's ``MongoClient``, made on first use and shared by every stage."""

    def __init__(self, url: MongoUrl, *, timeout_ms: int = 10_000) -> None:
        self.url = url
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._client: Any = None
        #: made by unpickling (in another process): its stages close it
        self.unpickled = False

    @property
    def where(self) -> str:
        """The servers, for messages (no credentials)."""
        return ",".join(self.url.hosts)

    def get(self) -> Any:
        """The ``MongoClient`` (made on first use; connecting happens on the first command)."""
        with self._lock:
            if self._client is None:
                pymongo = driver()
                try:
                    with warnings.catch_warnings():
                        # pymongo only warns about an unknown or invalid URI option
                        warnings.simplefilter("error", UserWarning)
                        self._client = self._make(pymongo)
                except (
                    pymongo.errors.ConfigurationError,
                    UserWarning,
                    ValueError,
                    TypeError,
                ) as exc:
                    raise ConfigError(
                        f"bad MongoDB URL {mask_url(self.url.uri)!r}: "
                        f"{hide_secret(str(exc), self.url.password)}"
                    ) from None
            return self._client

    def _make(self, pymongo: Any) -> Any:
        return pymongo.MongoClient(
            self.url.uri,
            serverSelectionTimeoutMS=self.timeout_ms,
            uuidRepresentation="standard",
            tz_aware=True,
            datetime_conversion="DATETIME_AUTO",
            appname="replikit",
        )

    def database(self, name: str) -> Any:
        """The database ``name`` with replikit's codec options."""
        return self.get().get_database(name, codec_options=codec())

    def collection(self, schema: str | None, name: str) -> Any:
        """Collection ``name`` of database ``schema``."""
        if schema is None:
            raise ConfigError(f"collection {name!r} names no database")
        return self.database(schema).get_collection(name)

    def hello(self) -> dict[str, Any]:
        """The server's ``hello`` reply."""
        with translated(self, "connect to"):
            return dict(self.get().admin.command("hello"))

    def transactions(self) -> bool:
        """Whether the deployment runs multi-document transactions (a replica set or a
        sharded cluster of MongoDB 4.0+; a standalone server does not)."""
        reply = self.hello()
        member = "setName" in reply or reply.get("msg") == "isdbgrid"
        return member and int(reply.get("maxWireVersion", 0)) >= 7

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (a process pool, Dask workers), which makes its own
        client on first use. The password travels inside the pickle (never in a ``repr``)."""
        return {"url": self.url, "timeout_ms": self.timeout_ms}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], timeout_ms=state["timeout_ms"])  # type: ignore[misc]
        self.unpickled = True

    def close(self) -> None:
        """Close the client's connections (a later use makes a new client)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@contextlib.contextmanager
def translated(client: Client, doing: str, *, table: str | None = None) -> Iterator[None]:
    """pymongo errors raised in the block as replikit errors naming ``doing`` and where."""
    pymongo = driver()
    errors = pymongo.errors
    try:
        yield
    except Error:
        raise
    except errors.OperationFailure as exc:
        text = hide_secret(str(exc.details.get("errmsg", exc) if exc.details else exc),
                           client.url.password)  # fmt: skip
        where = f" ({table})" if table else ""
        if exc.code in HISTORY_LOST:
            raise PositionLostError(
                f"the change stream of {table or client.where} cannot resume: {text}. The "
                "resume token is older than the oplog keeps; reload the tables "
                "(full-load-and-cdc) and start again"
            ) from exc
        if exc.code in NO_CHANGE_STREAMS:
            raise ConfigError(
                f"MongoDB at {client.where} has no change streams ({text}): they need a "
                "replica set or a sharded cluster (a one-node replica set is enough: start "
                "mongod with --replSet rs0 and run rs.initiate())"
            ) from exc
        if exc.code == SNAPSHOT_TOO_OLD:
            raise DataError(
                f"cannot {doing} MongoDB at {client.where}{where}: {text}. The read is at one "
                "cluster time, and the server keeps that history for "
                "minSnapshotHistoryWindowInSeconds (300 s by default): raise it "
                "(setParameter) above the time the read takes, then reload the table again",
                table=table,
            ) from exc
        if exc.code in (13, 18) or exc.code == 8000:
            raise ConnectError(f"cannot {doing} MongoDB at {client.where}: {text}") from exc
        raise DataError(f"MongoDB refused to {doing}{where}: {text}", table=table) from exc
    except (errors.ServerSelectionTimeoutError, errors.ConnectionFailure) as exc:
        text = hide_secret(str(exc), client.url.password).splitlines()[0]
        text = text.split(" (configured timeouts")[0].split(", Timeout:")[0][:300]
        raise ConnectError(f"cannot {doing} MongoDB at {client.where}: {text}") from exc
    except errors.InvalidName as exc:
        raise ConfigError(f"cannot {doing} MongoDB: {exc}") from exc
    except errors.PyMongoError as exc:
        text = hide_secret(str(exc), client.url.password)
        raise Error(f"cannot {doing} MongoDB at {client.where}: {text}") from exc
