"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s mypy``, ``nox -s bench``."""

import nox

nox.options.sessions = ["tests", "lint", "mypy"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".", "--group", "test")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "src")


@nox.session
def mypy(session: nox.Session) -> None:
    session.install("-e", ".", "--group", "lint")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[postgres]")
    session.run("python", "benchmarks/full_load.py", *session.posargs)
