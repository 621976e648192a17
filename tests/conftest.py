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
