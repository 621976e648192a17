"""Timeouts: a server that accepts the TCP connection and never answers is given up.

The ``connect_timeout`` URL setting bounds connecting (TCP connect, greeting, login) for every
driver; the CLI then exits 2 with one line naming the host and port, never a traceback.
The subprocess bound below only turns a hang into a failure; it is not a speed assertion.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import replikit as rk

HANG = 120  # seconds after which a run counts as hung (far above the 2 s setting)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local TCP port whose listener accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        for conn in held:
            conn.close()
        thread.join()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "replikit.cli", *args],
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"replikit {' '.join(args)} hung for {HANG} s on a silent server")


@pytest.mark.parametrize(
    "scheme",
    ["mysql+pymysql", "mysql+mysqldb", "postgresql"],
)
def test_cli_gives_up_on_a_silent_server(silent_port, tmp_path, scheme) -> None:
    if scheme == "mysql+mysqldb":
        pytest.importorskip("MySQLdb")
    url = f"{scheme}://app:pw-Secret@127.0.0.1:{silent_port}/shop?connect_timeout=2"
    proc = _cli("copy", url, f"sqlite:///{tmp_path / 'out.db'}")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"127.0.0.1:{silent_port}" in proc.stderr
    assert "within 2 s (connect_timeout)" in proc.stderr
    assert "pw-Secret" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("scheme", ["mysql", "postgresql"])
@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_connect_timeout_must_be_positive_seconds(scheme, value) -> None:
    with pytest.raises(rk.ConfigError, match="connect_timeout"):
        rk.endpoint(f"{scheme}://u:pw@h/db?connect_timeout={value}")
