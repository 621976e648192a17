"""Files URLs, the fsspec file system they name, atomic writes; OS errors translated here.

``file:///abs/dir`` (``file://rel/dir`` relative to the working folder), ``memory://dir``
(fsspec's in-memory file system, one per process), and any protocol fsspec knows when its
package is installed (``s3://bucket/prefix`` with s3fs, ``gs://`` with gcsfs, ``az://`` with
adlfs). Options in the URL query: ``format``, ``partition_by``, ``file_size``, ``batch_size``,
``compression``.

Every file is written under a hidden temporary name in its folder and renamed into place when
complete, so a reader of the folder never sees half a file; a failure (disk full, permission)
removes the temporary file and raises :class:`~replikit.ConnectError` naming the file. A
temporary file left by a process that died is removed by the next apply
(:meth:`Store.in_flight` tells it from one this process is writing now).
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from replikit.endpoints.base import require
from replikit.errors import ConfigError, ConnectError

__all__ = ["Location", "Store", "fsspec", "parse_url"]

PROTOCOLS = ("file", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
#: the package fsspec needs for a protocol (named in the install hint)
_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}


#: the temporary files this process is writing now, by protocol and path (see Store.in_flight)
_in_flight: set[tuple[str, str]] = set()
_in_flight_lock = threading.Lock()


def fsspec() -> Any:
    """The ``fsspec`` module (MissingDependencyError with the pip hint when absent)."""
    return require("fsspec", package="fsspec", extra="files", purpose="The files endpoint")


@dataclass(frozen=True, slots=True)
class Location:
    """Where the files live: fsspec protocol, root path, and the URL's query options."""

    protocol: str
    root: str
    query: dict[str, str]


def parse_url(url: str) -> Location:
    """``file:///abs``, ``file://rel``, ``memory://dir``, ``s3://bucket/prefix``..."""
    base, _, query = url.partition("?")
    scheme, colon, rest = base.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in PROTOCOLS:
        raise ConfigError(f"not a files URL: {url!r}; e.g. file:///data/out?format=parquet")
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if scheme == "file":
        path = rest[2:] if rest.startswith("//") else rest
        path = urllib.parse.unquote(path)
        if not path:
            raise ConfigError(f"{url!r} names no folder; e.g. file:///data/out")
        return Location("file", posixpath.normpath(path), params)
    if not rest.startswith("//") or not rest[2:].strip("/"):
        raise ConfigError(f"{url!r} names no folder; e.g. {scheme}://bucket/folder")
    root = urllib.parse.unquote(rest[2:]).rstrip("/")
    return Location(scheme, "/" + root.lstrip("/") if scheme == "memory" else root, params)


class Store:
    """The endpoint's file system and root folder: listing, reading, atomic writing."""

    def __init__(
        self,
        location: Location,
        *,
        filesystem: Any = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.location = location
        self.root = location.root
        self._given = filesystem
        self._options = dict(storage_options or {})
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        """The fsspec file system (made on first use)."""
        if self._fs is None:
            if self._given is not None:
                self._fs = self._given
            else:
                self._fs = self._make()
        return self._fs

    def _make(self) -> Any:
        protocol = self.location.protocol
        module = fsspec()
        try:
            return module.filesystem(protocol, **self._options)
        except ImportError as exc:
            package = _PACKAGES.get(protocol, protocol)
            raise ConfigError(
                f"{protocol}:// needs the fsspec package {package}: pip install {package}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"cannot use {protocol}:// with these storage options: {exc}"
            ) from exc

    @property
    def where(self) -> str:
        """The root folder for messages."""
        return f"{self.location.protocol}://{self.root}"

    def path(self, *parts: str) -> str:
        """``root/part/...``."""
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    # -- reading --------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        with self._errors("look at", path):
            return bool(self.fs.exists(path))

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is a folder."""
        with self._errors("look at", path):
            return bool(self.fs.isdir(path))

    def entries(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is_folder)`` of each entry of folder ``path`` (none when it is missing)."""
        with self._errors("list", path):
            if not self.fs.exists(path):
                return []
            out = []
            for info in self.fs.ls(path, detail=True):
                name = posixpath.basename(str(info["name"]).rstrip("/"))
                out.append((name, info.get("type") == "directory"))
            return sorted(out)

    def files_under(self, path: str) -> list[str]:
        """Every file below ``path`` (recursively), sorted; paths relative to ``path``."""
        with self._errors("list", path):
            if not self.fs.exists(path):
                return []
            found = self.fs.find(path)
        prefix = self._strip(path).rstrip("/") + "/"
        return sorted(self._strip(f)[len(prefix) :] for f in found)

    def _strip(self, path: str) -> str:
        """A path as fsspec lists it (memory:// paths keep their leading slash)."""
        return str(self.fs._strip_protocol(path))

    def read_text(self, path: str) -> str:
        """The text of ``path``."""
        with self._errors("read", path), self.fs.open(path, "rb") as f:
            return bytes(f.read()).decode("utf-8")

    @contextlib.contextmanager
    def reading(self, path: str) -> Iterator[IO[bytes]]:
        """``path`` open for reading."""
        with self._errors("read", path), self.fs.open(path, "rb") as f:
            yield f

    # -- writing --------------------------------------------------------------------------
    def makedirs(self, path: str) -> None:
        """Create folder ``path`` (and its parents) if missing."""
        with self._errors("create the folder", path):
            self.fs.makedirs(path, exist_ok=True)

    def remove(self, path: str) -> None:
        """Remove file ``path`` (missing: nothing to do)."""
        with self._errors("remove", path):
            if self.fs.exists(path):
                self.fs.rm_file(path)

    def remove_tree(self, path: str) -> None:
        """Remove folder ``path`` and everything in it (missing: nothing to do)."""
        with self._errors("remove", path):
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    @contextlib.contextmanager
    def writing(self, path: str) -> Iterator[IO[bytes]]:
        """``path`` written atomically: a hidden temporary file in the same folder, renamed to
        ``path`` when the block ends without error, removed when it raises."""
        folder, name = posixpath.split(path)
        temp = f"{folder}/.{name}.{secrets.token_hex(4)}.tmp"
        key = self._in_flight_key(temp)
        self.makedirs(folder)
        with _in_flight_lock:
            _in_flight.add(key)
        try:
            with self._errors("write", path):
                with self.fs.open(temp, "wb") as f:
                    yield f
                self.fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                if self.fs.exists(temp):
                    self.fs.rm_file(temp)
            raise
        finally:
            with _in_flight_lock:
                _in_flight.discard(key)

    def in_flight(self, path: str) -> bool:
        """Whether ``path`` is the temporary file of a write this process has not finished
        (a table's load beside the stream: not the leftover of a write that died)."""
        key = self._in_flight_key(path)
        with _in_flight_lock:
            return key in _in_flight

    def _in_flight_key(self, path: str) -> tuple[str, str]:
        return self.location.protocol, posixpath.normpath(self._strip(path))

    def write_text(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` atomically (see :meth:`writing`)."""
        with self.writing(path) as f:
            f.write(text.encode("utf-8"))

    def failed(self, exc: OSError, doing: str, path: str) -> ConnectError:
        """The :class:`ConnectError` for an OS error while ``doing`` ``path``."""
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ConnectError(
            f"cannot {doing} {self.location.protocol}://{path}: {reason} (check the "
            "folder's permissions and free space, then run again: nothing half-written "
            "was left)"
        )

    @contextlib.contextmanager
    def _errors(self, doing: str, path: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise self.failed(exc, doing, path) from exc
