"""Peer: the simplest hand-written PG->PG copy with psycopg.

Per table: ``COPY t TO STDOUT`` on the source streamed into ``COPY t FROM STDIN`` on the
target.  DDL comes from ``pg_dump --schema-only``: the pre-data section (tables) before
the data, the post-data section (PKs, indexes, FKs) after it, exactly like a plain
``pg_dump | psql`` restore does.

    python benchmarks/peers/copy_pipe.py SRC_URL DST_URL -t customers -t orders
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import psycopg

PG_BINDIR = os.environ.get("REPLIKIT_BENCH_PG_BINDIR", "/usr/lib/postgresql/15/bin")


def schema_section(src_url: str, tables: list[str], section: str) -> str:
    cmd = [
        os.path.join(PG_BINDIR, "pg_dump"),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        f"--section={section}",
        "-d",
        src_url,
    ]
    for table in tables:
        cmd += ["-t", table]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def run_sql(dst_url: str, sql: str) -> None:
    # pg_dump's plain output is SQL plus, since 15.14/16.10/17.6, psql-only
    # "\restrict KEY" / "\unrestrict KEY" lines: drop backslash lines, run the rest as
    # one simple-protocol script.
    script = "\n".join(line for line in sql.splitlines() if not line.startswith("\\"))
    with psycopg.connect(dst_url, autocommit=True) as conn:
        conn.execute(script.encode())


def copy_table(src: psycopg.Connection, dst: psycopg.Connection, table: str, fmt: str) -> int:
    opts = " (format binary)" if fmt == "binary" else ""
    nbytes = 0
    with (
        src.cursor() as scur,
        dst.cursor() as dcur,
        scur.copy(f"copy {table} to stdout{opts}") as out,
        dcur.copy(f"copy {table} from stdin{opts}") as inp,
    ):
        for chunk in out:
            nbytes += len(chunk)
            inp.write(chunk)
    return nbytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="COPY TO STDOUT -> COPY FROM STDIN peer")
    parser.add_argument("src_url")
    parser.add_argument("dst_url")
    parser.add_argument("-t", "--table", action="append", required=True)
    parser.add_argument("--format", choices=["text", "binary"], default="text")
    args = parser.parse_args(argv)

    run_sql(args.dst_url, schema_section(args.src_url, args.table, "pre-data"))
    with psycopg.connect(args.src_url) as src, psycopg.connect(args.dst_url) as dst:
        src.execute("set transaction isolation level repeatable read, read only")
        for table in args.table:
            copy_table(src, dst, table, args.format)
        dst.commit()
    run_sql(args.dst_url, schema_section(args.src_url, args.table, "post-data"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
