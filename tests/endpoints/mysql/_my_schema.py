"""A MySQL schema with every type family the endpoint handles, and helpers to run SQL."""

from contextlib import closing

import pymysql
from sqlalchemy.engine import make_url

from replikit.endpoints.mysql import MysqlEndpoint

# Both drivers run: the test dependency group installs mysqlclient, so a missing one fails
# (with the endpoint's install hint) instead of quietly skipping half the driver matrix.
DRIVERS = ["mysqlclient", "pymysql"]

ZOO = """
CREATE TABLE parent (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  code VARCHAR(10) NOT NULL,
  UNIQUE KEY uq_code (code)
) ENGINE=InnoDB;

CREATE TABLE zoo (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  parent_id INT UNSIGNED NULL,
  flag TINYINT(1) NOT NULL DEFAULT 1,
  tiny TINYINT NULL, utiny TINYINT UNSIGNED NULL,
  small SMALLINT UNSIGNED NULL, medium MEDIUMINT NULL, umedium MEDIUMINT UNSIGNED NULL,
  i INT NULL, ui INT UNSIGNED NULL, big BIGINT NULL, ubig BIGINT UNSIGNED NULL,
  bits BIT(12) NULL, bit1 BIT(1) NULL, yr YEAR NULL,
  dec_small DECIMAL(5,2) NULL DEFAULT 1.50, dec_big DECIMAL(65,30) NULL,
  f FLOAT NULL, d DOUBLE NULL,
  c CHAR(3) NULL, vc VARCHAR(50) NULL DEFAULT 'it''s', tt TINYTEXT NULL, txt MEDIUMTEXT NULL,
  latin VARCHAR(20) CHARACTER SET latin1 NULL,
  bin BINARY(4) NULL, vbin VARBINARY(16) NULL, blb LONGBLOB NULL,
  dt DATE NULL, dtm DATETIME(6) NULL, ts TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6)
     ON UPDATE CURRENT_TIMESTAMP(6),
  tm TIME(6) NULL,
  e ENUM('small','medium','large') NULL, s SET('a','b','c') NULL,
  j JSON NULL,
  geo GEOMETRY NULL,
  gen_total DECIMAL(8,2) AS (dec_small * 2) STORED,
  gen_virtual INT AS (i + 1) VIRTUAL,
  PRIMARY KEY (id),
  KEY idx_vc_prefix (vc(10)),
  KEY idx_multi (i, big),
  FULLTEXT KEY ft_txt (txt),
  CONSTRAINT fk_zoo_parent FOREIGN KEY (parent_id) REFERENCES parent (id)
    ON DELETE SET NULL ON UPDATE CASCADE,
  CONSTRAINT chk_small CHECK (small <> 12345)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 AUTO_INCREMENT=1000 COMMENT='every type';

CREATE VIEW zoo_view AS SELECT id, vc FROM zoo;
"""

ZOO_ROWS = """
INSERT INTO parent (id, code) VALUES (1, 'one'), (2, 'two');
INSERT INTO zoo (id, parent_id, flag, tiny, utiny, small, medium, umedium, i, ui, big, ubig,
  bits, bit1, yr, dec_small, dec_big, f, d, c, vc, tt, txt, latin, bin, vbin, blb, dt, dtm,
  ts, tm, e, s, j, geo) VALUES
 (1, 1, 1, -128, 255, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615, b'101010101010', b'1', 2155, 999.99,
  99999999999999999999999999999999999.999999999999999999999999999999, 3.14159265, 1e308,
  'ab', 'a\\tb\\nc\\\\d', 'tiny', 'emoji 😀 and ü', 'café', x'00010200', x'deadbeef', x'00ff00',
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999',
  '838:59:59.000000', 'large', 'a,c', '{"k": [1, 2.50, "x"]}',
  ST_GeomFromText('POINT(1 2)', 4326)),
 (2, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, b'0', b'0', 1901, -0.01,
  -0.000000000000000000000000000001, -1.5, -2.5e-300, '', '', '', '', '', x'', x'', x'',
  '2020-02-29', '1970-01-01 00:00:00', '1970-01-01 00:00:01', '-00:00:01.500000', 'small',
  '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1)')),
 (3, 2, 1, NULL, NULL, NULL, NULL, NULL, 7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '12:30:00',
  NULL, NULL, NULL, NULL);
"""


_DIGITS = (
    "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL "
    "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 "
    "UNION ALL SELECT 9)"
)


def numbers(n: int) -> str:
    """A portable derived table ``(SELECT seq ...)`` of 1..n (n <= 10,000; no MariaDB seq_)."""
    return (
        f"(SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 1 AS seq FROM {_DIGITS} a, "
        f"{_DIGITS} b, {_DIGITS} c, {_DIGITS} e "
        f"WHERE a.d + 10 * b.d + 100 * c.d + 1000 * e.d < {n}) nums"
    )


def run_sql(url: str, script: str, *, sql_mode: str | None = None) -> None:
    """Run ``;``-separated statements against the database of ``url``."""
    u = make_url(url)
    conn = pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        autocommit=True,
        charset="utf8mb4",
    )
    with closing(conn), conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        if sql_mode is not None:
            cur.execute("SET SESSION sql_mode = %s", (sql_mode,))
        for statement in script.split(";\n"):
            if statement.strip():
                cur.execute(statement)


def query(url: str, sql: str, args=()) -> list[tuple]:
    """Rows of one query against the database of ``url``."""
    u = make_url(url)
    conn = pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        charset="utf8mb4",
    )
    with closing(conn), conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def endpoint(url: str, **options) -> MysqlEndpoint:
    """The endpoint for ``url`` (constructed directly: independent of the URL registry)."""
    return MysqlEndpoint(url, **options)


def read_all(ep, table, columns=None) -> list[tuple]:
    """Every row of ``table`` through the endpoint's reader, in key order."""
    reader = ep.reader([table])
    (schema,) = reader.tables
    idx = [schema.column_names.index(c) for c in columns] if columns else None
    out = []
    for unit in reader.units(schema):
        for batch in reader.read(unit):
            out += [tuple(r[i] for i in idx) if idx else tuple(r) for r in batch.rows]
    return sorted(out, key=lambda r: repr(r[0]))
