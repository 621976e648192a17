import os

from hypothesis import HealthCheck, settings

# replikit.testing.plugin: also registered by the pytest11 entry point (same name: no clash)
pytest_plugins = [
    "replikit.testing.plugin",
    "fix_pg",
    "fix_mysql",
    "fix_mongo",
    "fix_browser",
    "live_task",
    "validate_db",
]

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# "db": examples that each touch a real database; fewer, because each costs a round trip
settings.register_profile(
    "db", max_examples=25, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _import_replikit_modules() -> None:
    """Import every replikit module here, in the main thread, before any test runs.

    pytest rewrites the asserts of every module of a plugin's distribution (replikit's
    pytest11 entry point makes that all of replikit), parsing each module's AST when it is
    first imported. replikit imports most modules lazily, so many are first imported inside a
    task's loader threads, and CPython 3.11 before 3.11.8 can fail two ASTs built at once in
    two threads with "SystemError: AST constructor recursion depth mismatch" (gh-106905; seen
    once in a full run). Importing them all now, one at a time, leaves nothing to parse in a
    thread. A module whose optional driver is missing is skipped (its tests skip or fail on
    their own).
    """
    import contextlib
    import importlib
    import pkgutil

    import replikit
    from replikit.errors import MissingDependencyError

    for info in pkgutil.walk_packages(replikit.__path__, "replikit."):
        if info.name == "replikit.__main__":
            continue
        with contextlib.suppress(ImportError, MissingDependencyError):
            importlib.import_module(info.name)


_import_replikit_modules()
