"""The record encoding of replikit's spill files (the change cache's segments, spilled
transactions): one length-prefixed, checksummed pickle per record.

A record is ``<payload length: u32 LE><crc32 of the payload: u32 LE><payload>``, the payload a
pickle of the record's object. Records are appended with :func:`encode` and read back from an
offset with :func:`read_at` (positional reads: several readers of one file never share a file
position). Pickles: only read files that replikit wrote and you trust.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from typing import Any

from replikit.errors import Error

__all__ = ["HEADER", "decode", "encode", "read_at"]

HEADER = struct.Struct("<II")  # payload length, crc32


def encode(obj: object) -> bytes:
    """One record holding ``obj``."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> Any:
    """The object of a record's payload (the bytes after its header)."""
    return pickle.loads(payload)  # our own files (see the module docs)


def read_at(fd: int, offset: int) -> tuple[Any, int]:
    """The object of the record at ``offset`` of open file ``fd``, and the next record's offset.

    Raises:
        Error: the record is cut short or its checksum does not match.
    """
    head = os.pread(fd, HEADER.size, offset)
    if len(head) < HEADER.size:
        raise Error(f"spill file record at offset {offset} is cut short")
    n, crc = HEADER.unpack(head)
    payload = os.pread(fd, n, offset + HEADER.size)
    if len(payload) < n or zlib.crc32(payload) != crc:
        raise Error(f"spill file record at offset {offset} is damaged")
    return decode(payload), offset + HEADER.size + n
