import pickle
import types

import pytest

import replikit
from replikit import errors


def test_all_is_exact():
    public = {
        name
        for name in dir(replikit)
        if (not name.startswith("_")
        and name not in {"annotations"}
        and not isinstance(getattr(replikit, name), types.ModuleType))
        or name == "transforms"
    }
    modules = {
        "changes",
        "endpoints",
        "errors",
        "mapping",
        "pipeline",
        "positions",
        "schema",
        "task",
        "validation",
        "demo",
        "cli",
    }
    assert set(replikit.__all__) == public - modules


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_error_and_pickles(name):
    cls = getattr(errors, name)
    assert issubclass(cls, replikit.Error)
    if cls is errors.MissingDependencyError:
        err = cls("psycopg", "postgres", "The PostgreSQL endpoint")
        assert 'pip install "replikit[postgres]"' in str(err)
    elif cls is errors.DataError:
        err = cls("value too long", table="public.t", column="c", key={"id": 7})
        assert "table public.t" in str(err) and "id=7" in str(err)
    elif cls is errors.TaskError:
        err = cls("1 of 2 tables failed", {"public.t": ValueError("x")})
    elif cls is errors.TableNotFoundError:
        err = cls("no table public.t in the catalog", table="public.t")
        assert isinstance(err, errors.SchemaError)
    else:
        err = cls("boom")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert str(clone) == str(err)
    if cls is not errors.TaskError:  # its causes are exceptions, which compare by identity
        assert clone.__dict__ == err.__dict__
    assert clone.__dict__.keys() == err.__dict__.keys()


def test_connect_error_is_retryable_config_error_is_not():
    assert replikit.ConnectError.retryable
    assert not replikit.ConfigError.retryable
