"""The application code under test: a few queries of a video rental shop (Sakila).

Plain SQLAlchemy Core with portable SQL, so the same code runs on the PostgreSQL and MariaDB
production databases and on the SQLite clones the tests use.
"""

from __future__ import annotations

from sqlalchemy import Engine, text


def open_rentals(engine: Engine, customer_id: int) -> int:
    """Rentals of ``customer_id`` not returned yet."""
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM rental WHERE customer_id = :c AND return_date IS NULL"),
            {"c": customer_id},
        ).scalar_one()


def return_everything(engine: Engine, customer_id: int) -> int:
    """Mark every open rental of ``customer_id`` returned; the number of rentals returned."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                "UPDATE rental SET return_date = CURRENT_TIMESTAMP "
                "WHERE customer_id = :c AND return_date IS NULL"
            ),
            {"c": customer_id},
        )
        return result.rowcount


def revenue_by_customer(engine: Engine) -> dict[int, float]:
    """Payments per customer."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT customer_id, sum(amount) FROM payment GROUP BY customer_id")
        )
        return {c: float(total) for c, total in rows}


def add_category(engine: Engine, category_id: int, name: str) -> None:
    """A new film category."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO category (category_id, name, last_update) "
                 "VALUES (:i, :n, CURRENT_TIMESTAMP)"),
            {"i": category_id, "n": name},
        )  # fmt: skip


def category_names(engine: Engine) -> list[str]:
    """Every category name, sorted."""
    with engine.connect() as conn:
        return sorted(n for (n,) in conn.execute(text("SELECT name FROM category")))
