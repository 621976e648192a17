"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s mypy``, ``nox -s docs``,
``nox -s bench``."""

import nox

nox.options.sessions = ["tests", "lint", "mypy"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    # the dev group, as CI: the browser, pseudo-terminal, docs-site and notebook tests need it
    session.install("-e", ".", "--group", "dev")
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
def docs(session: nox.Session) -> None:
    """Build the docs site (``nox -s docs -- serve`` to preview it)."""
    session.install("-e", ".", "--group", "docs")
    if session.posargs[:1] == ["serve"]:
        session.run("python", "-m", "mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("python", "-m", "mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[postgres]")
    session.run("python", "benchmarks/full_load.py", *session.posargs)
