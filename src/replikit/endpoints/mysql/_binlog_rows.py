"""Rows events decoded straight from the packet bytes, per table layout (sans-IO).

mysql-replication decodes a row value by value, dispatching on the column type for each one;
that is most of the CPU a binlog reader spends. :class:`RowsPlan` reads a table map once
(column types and metadata, as the library parsed them) and generates one Python function per
event shape (operation and ``columns_present`` bitmaps) that decodes every row of an event in
straight-line code: one ``struct`` call for each run of fixed-size columns when a row has no
NULL, inlined conversions, and dicts built from literals.

The values are exactly those :class:`~._binlog_decode.TableDecoder` makes of the library's
output (the library's raw value, then :func:`~._binlog_values.conversion`). Whatever the plan
does not reproduce exactly falls back to the library for the whole event: a table with a
column type it does not handle (old temporal types, MySQL binary JSON, ...) gets no plan, and
a value that needs the library's word (a zero date the policy refuses, a boolean that is not
0/1, undecodable text, bytes no server writes, ...) makes :meth:`RowsPlan.rows` return ``None``.
Generated code holds no name from the binlog: column names are constants of its namespace.
"""

from __future__ import annotations

import codecs
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from types import CodeType
from typing import Any

from pymysqlreplication.row_event import RowsEvent

from replikit.changes import Op
from replikit.endpoints.mysql._binlog_stream import FastRows
from replikit.endpoints.mysql._binlog_values import CONVERSIONS, ZERO_DATE, base_type, conversion
from replikit.schema.model import Column, TableId
from replikit.schema.types import Kind

__all__ = ["RowsPlan", "plan"]

Row = tuple[Op, TableId, Any, Any, Any]

# binlog column types (mysql-replication's constants.FIELD_TYPE)
TINY, SHORT, LONG, FLOAT, DOUBLE, LONGLONG, INT24, DATE, YEAR = 1, 2, 3, 4, 5, 8, 9, 10, 13
VARCHAR, BIT, TIMESTAMP2, DATETIME2, TIME2 = 15, 16, 17, 18, 19
NEWDECIMAL, ENUM, SET, BLOB, STRING, GEOMETRY = 246, 247, 248, 252, 254, 255

_INTS = {TINY: "b", SHORT: "h", LONG: "i", LONGLONG: "q", INT24: "Hb"}
_SET_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_BLOB_LENGTHS = {
    1: "ln = data[pos]",
    2: "ln = U16(data, pos)[0]",
    3: "ln = U16(data, pos)[0] | data[pos + 2] << 16",
    4: "ln = U32(data, pos)[0]",
}
_FSP_BYTES = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3}
_DATES = (Kind.DATE, Kind.TIMESTAMP)
_SET_CACHE = 4096  # distinct SET masks remembered per column
_SHAPES = 64  # event shapes (bitmaps) compiled per table map; more go to the library
_CODE_CACHE = 256  # compiled sources kept across table maps (rotations, reconnects)
_CODE: dict[str, CodeType] = {}
_EPOCH = datetime(1970, 1, 1)


class Fallback(Exception):
    """The event needs mysql-replication's own decoding (raised inside generated code)."""


def _base_namespace() -> dict[str, Any]:
    return {
        "__builtins__": {},
        "Fallback": Fallback,
        "from_bytes": int.from_bytes,
        "U16": struct.Struct("<H").unpack_from,
        "U32": struct.Struct("<I").unpack_from,
        "BOOL": {0: False, 1: True},
        "DATE": date,
        "DT": datetime,
        "TIME": time,
        "TD": timedelta,
        "DEC": Decimal,
        "FROMTS": datetime.fromtimestamp,
        "UTC": UTC,
        "EPOCH": _EPOCH,
        "ZD": ZERO_DATE,
        "ZB": b"\x00",
        "ValueError": ValueError,
        "CHARMAP": codecs.charmap_decode,
    }


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    return [pad + line for line in lines]


class _Col:
    """Code generation for one column of a table map."""

    def __init__(
        self,
        i: int,
        meta: Any,
        col: Column,
        how: tuple[str, Any] | None,
        ns: dict[str, Any],
        *,
        zero_ok: bool,
    ) -> None:
        self.i = i
        self.zero_ok = zero_ok
        self.meta = meta
        self.how = how
        self.tag = how[0] if how else None
        self.v = f"v{i}"
        self.name = f"N{i}"
        ns[self.name] = col.name
        self.conv = f"C{i}"
        if how is not None:
            ns[self.conv] = CONVERSIONS[how[0]](how[1])
        self.special = col.type.kind in _DATES or base_type(col) == "set"
        self.ns = ns

    # -- the pieces generated code is made of ------------------------------------------
    def zero(self) -> list[str]:
        """A zero date: NULL and counted when the policy and the column allow it."""
        if self.zero_ok:
            return [f"{self.v} = None", f"zeros.append({self.name})"]
        return ["raise Fallback"]

    def finish(self) -> list[str]:
        """Apply the column's conversion to the library's value in ``v``."""
        if self.how is None:
            return []
        lines = [f"{self.v} = {self.conv}({self.v})"]
        if self.tag == "timestamp":
            lines += [f"if {self.v} is ZD:", *_indent(self.zero())]
        return lines

    def out_of_range(self) -> list[str]:
        """The library's None for an unreadable date (``_image`` turns it into a zero date)."""
        return self.zero() if self.special else [f"{self.v} = None"]

    def fraction(self, fsp: int, nbytes: int, *, signed: bool = False) -> list[str]:
        """``x`` -> ``x`` without its fractional bytes and ``us`` (the library's microseconds).

        The library reads the fraction as a signed number. A negative ``TIME`` has a negative
        one (``signed``: kept, as it does); elsewhere one outside 0..999999 is left to it.
        """
        if nbytes == 0:
            return ["us = 0"]
        mul = 10 ** (6 - fsp)
        half = 1 << (8 * nbytes - 1)
        lines = [f"f = x & {(1 << 8 * nbytes) - 1}", f"x >>= {8 * nbytes}"]
        if signed:
            lines += [f"if f >= {half}:", f"    f -= {2 * half}"]
            tenth = "(f // 10 if f >= 0 else -(-f // 10))"  # int(f / 10): toward zero
        else:
            first_too_big = (10**6 // mul) * (10 if fsp % 2 else 1)
            lines += [f"if f >= {min(half, first_too_big)}:", "    raise Fallback"]
            tenth = "f // 10"
        return [*lines, f"us = {tenth if fsp % 2 else 'f'}" + (f" * {mul}" if mul > 1 else "")]

    def supported(self, errors: str) -> bool:
        """Whether generated code reproduces the library's value of this column exactly."""
        t, meta = self.meta.type, self.meta
        if t == ENUM:
            return meta.enum_values is not None and meta.size in (1, 2)
        if t == SET:
            return meta.set_values is not None and self.tag == "set" and 1 <= meta.size <= 8
        if t == BIT:
            return self.tag in ("bool", "bits")
        return self.fixed() is not None or self.variable(errors) is not None

    # -- fixed-size values: a struct format and the code after unpacking ----------------
    def fixed(self) -> str | None:
        t = self.meta.type
        if t in _INTS:
            return _INTS[t].upper() if self.meta.unsigned else _INTS[t]
        if t in (FLOAT, DOUBLE):
            return "f" if t == FLOAT else "d"
        if t == YEAR:
            return "B"
        if t == DATE:
            return "HB"
        if t in (DATETIME2, TIMESTAMP2, TIME2):
            size = {DATETIME2: 5, TIMESTAMP2: 4, TIME2: 3}[t]
            return f"{size + _FSP_BYTES.get(self.meta.fsp, 0)}s"
        if t == BIT:
            return f"{self.meta.bytes}s"
        if t == ENUM:
            return {1: "B", 2: "H"}[self.meta.size]
        if t == SET:
            return _SET_FORMATS.get(self.meta.size, f"{self.meta.size}s")
        if t == NEWDECIMAL:
            return f"{_decimal_size(self.meta.precision, self.meta.decimals)}s"
        return None

    def post(self, raw: list[str]) -> list[str]:
        """Lines that turn the unpacked fields ``raw`` into the column's value ``v``."""
        t, v = self.meta.type, self.v
        if t in _INTS:
            expr = raw[0] if t != INT24 else f"({raw[0]} + ({raw[1]} << 16))"
            if self.tag == "bool":
                return [f"{v} = BOOL[{expr}]"]
            return [f"{v} = {expr}", *self.finish()]
        if t in (FLOAT, DOUBLE):
            return [f"{v} = {raw[0]}", *self.finish()]
        if t == YEAR:
            if self.tag == "year":
                return [f"{v} = {raw[0]} + 1900 if {raw[0]} else 0"]
            return [f"{v} = {raw[0]} + 1900", *self.finish()]
        if t == DATE:
            return self._date(raw)
        if t == DATETIME2:
            return self._datetime2(raw[0])
        if t == TIMESTAMP2:
            return self._timestamp2(raw[0])
        if t == TIME2:
            return self._time2(raw[0])
        if t == BIT:
            mask = (1 << self.meta.bits) - 1
            expr = f"from_bytes({raw[0]}, 'big') & {mask}"
            return [f"{v} = BOOL[{expr}]" if self.tag == "bool" else f"{v} = {expr}"]
        if t == ENUM:
            self.ns[f"E{self.i}"] = tuple(self.meta.enum_values)
            return [f"{v} = E{self.i}[{raw[0]}]", *self.finish()]
        if t == SET:
            return self._set(raw[0])
        return self._decimal(raw[0])

    def _date(self, raw: list[str]) -> list[str]:
        v = self.v
        return [
            f"x = {raw[0]} | {raw[1]} << 16",
            "if x >> 9 and (x >> 5) & 15 and x & 31:",
            f"    {v} = DATE(x >> 9, (x >> 5) & 15, x & 31)",
            *_indent(self.finish()),
            "else:",
            *_indent(self.out_of_range()),
        ]

    def _datetime2(self, raw: str) -> list[str]:
        fsp = self.meta.fsp
        return [
            f"x = from_bytes({raw}, 'big')",
            *self.fraction(fsp, _FSP_BYTES.get(fsp, 0)),
            "ym = (x >> 22) & 131071",
            "try:",
            f"    {self.v} = DT(ym // 13, ym % 13, (x >> 17) & 31, (x >> 12) & 31,"
            " (x >> 6) & 63, x & 63, us)",
            "except ValueError:",
            *_indent(self.out_of_range()),
            *(["else:", *_indent(self.finish())] if self.how else []),
        ]

    def _timestamp2(self, raw: str) -> list[str]:
        fsp, v = self.meta.fsp, self.v
        lines = [f"x = from_bytes({raw}, 'big')", *self.fraction(fsp, _FSP_BYTES.get(fsp, 0))]
        lines += ["if x >= 2147483648:", "    raise Fallback"]  # the library reads it signed
        if self.tag == "timestamp":
            return [
                *lines,
                "if x or us:",
                f"    {v} = FROMTS(x, UTC).replace(microsecond=us)",
                "else:",
                *_indent(self.zero()),
            ]
        return [*lines, f"{v} = EPOCH + TD(0, x, us)", *self.finish()]

    def _time2(self, raw: str) -> list[str]:
        fsp, v = self.meta.fsp, self.v
        # the sign bit clear is a negative time: the library negates the 24-bit integer part,
        # adds the (signed) fraction and negates the sum
        lines = [
            f"x = from_bytes({raw}, 'big')",
            *self.fraction(fsp, _FSP_BYTES.get(fsp, 0), signed=True),
            "if x & 8388608:",
            "    neg = False",
            "else:",
            "    neg = True",
            "    x = 16777216 - x",
            "h = (x >> 12) & 1023",
            "m = (x >> 6) & 63",
            "s = x & 63",
        ]
        delta = "TD(hours=h, minutes=m, seconds=s, microseconds=us)"
        if self.tag == "time":
            return [
                *lines,
                "if neg:",
                f"    {v} = {self.conv}(-{delta})",
                "elif h < 24 and m < 60 and s < 60:",
                f"    {v} = TIME(h, m, s, us)",
                "else:",
                f"    {v} = {self.conv}({delta})",
            ]
        return [*lines, f"{v} = -{delta} if neg else {delta}", *self.finish()]

    def _set(self, raw: str) -> list[str]:
        i, v = self.i, self.v
        values = tuple(self.meta.set_values)
        convert = self.ns[self.conv]
        cache: dict[int, str] = {}

        def text(mask: int) -> str:
            chosen = {val for idx, val in enumerate(values) if mask & (1 << idx)}
            out: str = convert(chosen) if chosen else ""  # an empty SET is "" (EMPTY_SET)
            if len(cache) < _SET_CACHE:
                cache[mask] = out
            return out

        self.ns[f"SM{i}"], self.ns[f"SF{i}"] = cache, text
        mask = raw if self.fixed() in _SET_FORMATS.values() else f"from_bytes({raw}, 'little')"
        return [f"x = {mask}", f"{v} = SM{i}.get(x)", f"if {v} is None:", f"    {v} = SF{i}(x)"]

    def _decimal(self, raw: str) -> list[str]:
        precision, scale = self.meta.precision, self.meta.decimals
        size = _decimal_size(precision, scale)
        sign = 0x80 << 8 * (size - 1)
        lines = [
            f"x = from_bytes({raw}, 'big')",
            f"if x & {sign}:",
            f"    x ^= {sign}",
            "    sg = ''",
            "else:",
            f"    x ^= {((1 << 8 * size) - 1) ^ sign}",
            "    sg = '-'",
        ]
        terms = []
        shift = 0
        for nbytes, weight in _decimal_groups(precision, scale):
            part = f"(x >> {shift})" if shift else "x"
            if shift + 8 * nbytes < 8 * size:
                part = f"({part} & {(1 << 8 * nbytes) - 1})"
            terms.append(part if weight == 1 else f"{part} * {weight}")
            shift += 8 * nbytes
        exponent = f"E-{scale}" if scale else ""
        return [
            *lines,
            f"t = {' + '.join(terms) or '0'}",
            f"{self.v} = DEC(f'{{sg}}{{t}}{exponent}')",
            *self.finish(),
        ]

    # -- variable-size values: read at pos, advance pos -------------------------------------
    def variable(self, errors: str) -> list[str] | None:
        t = self.meta.type
        if t in (VARCHAR, STRING):
            if self.meta.max_length > 255:
                prefix = ["ln = data[pos] | data[pos + 1] << 8", "pos += 2"]
            else:
                prefix = ["ln = data[pos]", "pos += 1"]
        elif t in (BLOB, GEOMETRY) and self.meta.length_size in _BLOB_LENGTHS:
            size = self.meta.length_size
            prefix = [_BLOB_LENGTHS[size], f"pos += {size}"]
        else:
            return None
        body = self._bytes_value(errors)
        if body is None:
            return None
        return [*prefix, f"{self.v} = data[pos:pos + ln]", "pos += ln", *body]

    def _bytes_value(self, errors: str) -> list[str] | None:
        v, tag = self.v, self.tag
        if self.meta.type == GEOMETRY:
            return self.finish()  # raw bytes, never decoded
        name = self.meta.character_set_name
        encoding = "utf-8" if name is None else RowsEvent.charset_to_encoding(name)
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:  # "binary": the library keeps the bytes (b"" decodes to "")
            if tag == "bytes":
                return []
            if tag == "padded" and self.how is not None:
                return [f"{v} = {v}.ljust({int(self.how[1])}, ZB)"]
            return [f"if not {v}:", f"    {v} = ''", *self.finish()]
        table = _charmap(encoding)
        if codec == "utf-8" and errors == "strict":
            decode = [f"{v} = {v}.decode()"]
        elif table is not None:  # cp1252 (MySQL's latin1) and the like, without a Python frame
            self.ns[f"TABLE{self.i}"] = table
            decode = [f"{v} = CHARMAP({v}, {errors!r}, TABLE{self.i})[0]"]
        else:
            self.ns[f"ENC{self.i}"] = encoding
            decode = [f"{v} = {v}.decode(ENC{self.i}, {errors!r})"]
        return decode if tag in (None, "json") else [*decode, *self.finish()]


def _charmap(encoding: str) -> str | None:
    """The decoding table of a single-byte charmap codec (what its ``decode`` does), or None."""
    decode = codecs.lookup(encoding).decode
    module = sys.modules.get(getattr(decode, "__module__", None) or "")
    table = getattr(module, "decoding_table", None)
    if not isinstance(table, str) or len(table) != 256:
        return None
    every = bytes(range(256))
    same = codecs.charmap_decode(every, "replace", table)[0] == every.decode(encoding, "replace")
    return table if same else None


def _literal(cols: list[_Col], present: list[_Col]) -> str:
    """A dict display of ``cols`` (absent from the image: None, as the library has it)."""
    return "{" + ", ".join(f"{c.name}: {c.v if c in present else 'None'}" for c in cols) + "}"


def _decimal_groups(precision: int, scale: int) -> list[tuple[int, int]]:
    """``(bytes, weight)`` of each digit group of a packed decimal, least significant first."""
    compressed = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    integral = precision - scale
    frac_full, frac_rest = divmod(scale, 9)
    int_full, int_rest = divmod(integral, 9)
    groups = []
    weight = 1
    if compressed[frac_rest]:
        groups.append((compressed[frac_rest], weight))
    weight = 10**frac_rest
    for _ in range(frac_full):
        groups.append((4, weight))
        weight *= 10**9
    for _ in range(int_full):
        groups.append((4, weight))
        weight *= 10**9
    if compressed[int_rest]:
        groups.append((compressed[int_rest], weight))
    return groups


def _decimal_size(precision: int, scale: int) -> int:
    return sum(n for n, _ in _decimal_groups(precision, scale))


class RowsPlan:
    """Decodes the rows events of one table map (see the module docstring)."""

    def __init__(
        self,
        cols: list[_Col],
        ns: dict[str, Any],
        *,
        key: list[int],
        table: TableId,
        errors: str,
        on_zero: Callable[[str], Any],
    ) -> None:
        self._cols = cols
        self._ns = ns
        self._key = key
        self._errors = errors
        self._on_zero = on_zero
        ns["TID"] = table
        self._fns: dict[tuple[Any, ...], Callable[..., int]] = {}

    def rows(self, event: Any, op: Op) -> list[Row] | None:
        """The ``(op, table, key, before, after)`` of every row of ``event``; None: fall back.

        ``event`` is a :class:`~._binlog_stream.FastRows`, or a library rows event whose rows
        were not read yet: its packet is positioned at the first row, which this leaves as it
        was.
        """
        if event.__class__ is FastRows:
            data, start, end = event.data, event.start, event.end
        else:
            wrapper = event.packet
            if getattr(wrapper, "_BinLogPacketWrapper__data_buffer", b""):
                return None
            packet = wrapper.packet
            data = packet._data
            start = packet._position
            end = start + event.event_size - wrapper.read_bytes
        after = (event.columns_present_bitmap2,) if op is Op.UPDATE else ()
        shape = (op, event.columns_present_bitmap, *after)
        decode = self._fns.get(shape)
        if decode is None:
            if event.number_of_columns != len(self._cols) or len(self._fns) >= _SHAPES:
                return None  # partial row images changing columns at random: not worth code
            decode = self._fns[shape] = self._compile(op, shape[1:])
        out: list[Row] = []
        zeros: list[str] = []
        try:
            if decode(data, start, end, out, zeros) != end:
                return None
        except Exception:  # anything odd is the library's to decode or to refuse
            return None
        for name in zeros:
            self._on_zero(name)
        return out

    # -- code generation -----------------------------------------------------------------
    def _compile(self, op: Op, bitmaps: tuple[bytes, ...]) -> Callable[..., int]:
        body: list[str] = []
        for n, bitmap in enumerate(bitmaps):
            present = [c for c in self._cols if bitmap[c.i // 8] & (1 << (c.i % 8))]
            body += self._image(present)
            body.append(f"d{n} = {_literal(self._cols, present)}")
            if n == 0:  # the key: of the before image, or of the only one
                key = [self._cols[i] for i in self._key]
                body.append(f"k = {_literal(key, present)}")
        before, after = {Op.INSERT: ("None", "d0"), Op.DELETE: ("d0", "None")}.get(op, ("d0", "d1"))
        source = "\n".join(
            [
                "def decode(data, pos, end, out, zeros):",
                "    append = out.append",
                "    while pos < end:",
                *_indent(body, 2),
                f"        append((OP, TID, k, {before}, {after}))",
                "    return pos",
            ]
        )
        code = _CODE.get(source)
        if code is None:  # compiling a wide table's code takes a while: once per layout
            if len(_CODE) >= _CODE_CACHE:
                _CODE.clear()
            code = _CODE[source] = compile(source, "<binlog rows>", "exec")
        namespace = {**self._ns, "OP": op}
        exec(code, namespace)  # our own code; names from the binlog are data in namespace
        decode: Callable[..., int] = namespace["decode"]
        return decode

    def _image(self, present: list[_Col]) -> list[str]:
        nbytes = (len(present) + 7) // 8
        if nbytes == 0:
            lines = ["nb = 0"]
        elif nbytes == 1:
            lines = ["nb = data[pos]", "pos += 1"]
        else:
            lines = [f"nb = from_bytes(data[pos:pos + {nbytes}], 'little')", f"pos += {nbytes}"]
        fast: list[str] = []
        run: list[_Col] = []
        for c in present:
            if c.fixed() is not None:
                run.append(c)
                continue
            fast += self._unpack(run)
            run = []
            fast += c.variable(self._errors) or ["raise Fallback"]
        fast += self._unpack(run)
        slow: list[str] = []
        for j, c in enumerate(present):
            read = self._unpack([c]) if c.fixed() else c.variable(self._errors) or []
            slow += [f"if nb & {1 << j}:", f"    {c.v} = None", "else:", *_indent(read)]
        return [*lines, "if not nb:", *_indent(fast or ["pass"]), "else:", *_indent(slow)]

    def _unpack(self, run: list[_Col]) -> list[str]:
        """One struct call for a run of fixed-size columns, then each column's conversion."""
        if not run:
            return []
        layout = struct.Struct("<" + "".join(c.fixed() or "" for c in run))
        name = f"S{len(self._ns)}"
        self._ns[name] = layout.unpack_from
        names: list[str] = []
        after: list[str] = []
        for c in run:
            one = struct.Struct("<" + (c.fixed() or ""))
            raw = [f"r{c.i}_{n}" for n in range(len(one.unpack(bytes(one.size))))]
            if len(raw) == 1 and c.post([c.v]) == [f"{c.v} = {c.v}"]:  # the field is the value
                names.append(c.v)
                continue
            names += raw
            after += c.post(raw)
        return [f"{', '.join(names)}, = {name}(data, pos)", f"pos += {layout.size}", *after]


def plan(
    table_map: Any,
    columns: Mapping[str, Column],
    *,
    key: Sequence[str],
    table: TableId,
    tinyint1_as_bool: bool,
    zero_dates: str,
    errors: str,
    on_zero: Callable[[str], Any],
) -> RowsPlan | None:
    """The fast decoder of a library table map (None: a column needs the library).

    ``columns`` are the reflected columns by name, ``zero_dates`` the reader's policy and
    ``on_zero`` what counts a zero date read as NULL (called after the event decoded).
    """
    ns = _base_namespace()
    cols = []
    for i, meta in enumerate(table_map.columns):
        col = columns.get(meta.name) if meta.name else None
        if col is None:
            return None
        how = conversion(col, tinyint1_as_bool=tinyint1_as_bool)
        zero_ok = zero_dates != "error" and bool(col.nullable)
        c = _Col(i, meta, col, how, ns, zero_ok=zero_ok)
        if not c.supported(errors):
            return None
        cols.append(c)
    names = [c.meta.name for c in cols]
    if any(k not in names for k in key):
        return None
    index = [names.index(k) for k in key]
    return RowsPlan(cols, ns, key=index, table=table, errors=errors, on_zero=on_zero)
