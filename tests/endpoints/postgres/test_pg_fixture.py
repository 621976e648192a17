import psycopg


def test_pg_url_is_a_fresh_database(pg_url: str, pg_server) -> None:
    assert pg_url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        n = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public'"
        ).fetchone()
        assert n == (0,)
    assert pg_server.url("x").endswith("/x")
