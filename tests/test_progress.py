"""Live progress (#13 item 2): a live table in a terminal, plain lines in a pipe, and the
partial statistics after Ctrl-C in both.

The CLI runs as a child process; ``REPLIKIT_FAILPOINT=full-load.batch:1:pause`` holds the load
after its first batch (10,000 of 100,000 rows), so what the display shows is known without
timing anything.
"""

import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from replikit.pipeline.progress import Progress
from replikit.pipeline.stats import Statistics, TableState

ROOT = Path(__file__).resolve().parent.parent
PAUSED = "failpoint full-load.batch reached"
ESC = "\x1b"
GAP = r"(?:\s|\x1b\[[0-9;]*m)+"  # blanks between columns, and colour codes in a terminal


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE small (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO big VALUES (?, ?)", ((i, f"r{i}") for i in range(100_000)))
        conn.execute("INSERT INTO small VALUES (1, 'x')")
    conn.close()
    return f"sqlite:///{path}"


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TERM": "xterm-256color", **extra}
    # rich reads these before the terminal's own size and abilities
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def _copy(source, tmp_path, *flags):
    target = f"sqlite:///{tmp_path}/o.db"
    return [sys.executable, "-m", "replikit.cli", "copy", source, target, *flags]


def _spawn(argv, **env):
    child = pexpect.spawn(
        argv[0], argv[1:], env=_env(**env), dimensions=(30, 120), encoding="utf-8", timeout=60
    )
    child.logfile_read = io.StringIO()  # the whole screen stream, for failure messages
    return child


# -- a terminal ------------------------------------------------------------------------------
def test_terminal_shows_a_live_row_per_table_and_ctrl_c_prints_the_partial_statistics(
    source, tmp_path
):
    child = _spawn(_copy(source, tmp_path), REPLIKIT_FAILPOINT="full-load.batch:1:pause")
    child.expect_exact(PAUSED)
    child.expect(f"rows/s{GAP}ETA")  # the live table's header
    child.expect(f"big{GAP}Full load.*10,000/100,000")  # a row per table: rows of the estimate
    child.expect(f"small{GAP}Before load")
    child.expect(r"0/2 tables loaded \| 10,000 of ~100,001 rows \(10%\)")
    child.sendintr()  # Ctrl-C from the terminal
    child.expect_exact("stopping after the current batch")
    child.expect(f"big{GAP}Table cancelled{GAP}10,000")  # the partial statistics
    child.expect(f"small{GAP}Table cancelled{GAP}0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, child.logfile_read.getvalue()[-2000:]


def test_terminal_without_rich_redraws_one_status_line(source, tmp_path):
    code = (
        "import sys; sys.modules['rich'] = None; from replikit.cli import main; "
        f"sys.exit(main({_copy(source, tmp_path)[3:]!r}))"
    )
    child = _spawn([sys.executable, "-c", code], REPLIKIT_FAILPOINT="full-load.batch:1:pause")
    child.expect_exact(PAUSED)
    child.expect(r"\r\x1b\[K0/2 tables loaded \| 10,000 of ~100,001 rows \(10%\)")
    child.sendintr()
    child.expect(r"big\s+Table cancelled\s+10,000")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130


# -- a pipe ----------------------------------------------------------------------------------
def _lines_until(stream, *wanted):
    seen = []
    for line in stream:
        seen.append(line)
        if all(any(w in s for s in seen) for w in wanted):
            return "".join(seen)
    pytest.fail(f"never saw {wanted}; got: {''.join(seen)}")


def test_a_pipe_gets_plain_event_lines_and_ctrl_c_prints_the_partial_statistics(source, tmp_path):
    proc = subprocess.Popen(
        _copy(source, tmp_path),
        env=_env(REPLIKIT_FAILPOINT="full-load.batch:1:pause"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = _lines_until(proc.stderr, PAUSED, "big: started (~100,000 rows)")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = first + err
    assert proc.returncode == 130, err
    assert re.search(r"^\d\d:\d\d:\d\d replikit: big: started \(~100,000 rows\)$", err, re.M)
    assert "replikit: big: cancelled after 10,000 rows" in err
    assert "replikit: small: cancelled after 0 rows" in err
    assert re.search(r"big +Table cancelled +10,000", out)  # the partial statistics
    assert ESC not in out and ESC not in err


def test_a_pipe_gets_one_line_per_table_event_and_no_escape_codes(source, tmp_path):
    proc = subprocess.run(
        _copy(source, tmp_path), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    events = [line.split(" ", 1)[1] for line in proc.stderr.splitlines()]
    assert events[0] == "replikit: big: started (~100,000 rows)"
    assert [e for e in events if e.startswith("replikit: big: finished, 100,000 rows in ")]
    assert [e for e in events if e.startswith("replikit: small: finished, 1 row in ")]
    assert events[-1].startswith("replikit: done in ")
    assert events[-1].endswith("2 tables: 2 Table completed; 100,001 rows")
    assert ESC not in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--no-progress", "--json"])
def test_no_progress_and_json_keep_a_pipe_quiet(source, tmp_path, flag):
    proc = subprocess.run(
        _copy(source, tmp_path, flag), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    if flag == "--json":
        assert '"rows": 100001' in proc.stdout


# -- the lines themselves (in-process) -------------------------------------------------------
def _wait_for(stream, text):
    deadline = time.monotonic() + 30
    while text not in stream.getvalue():
        assert time.monotonic() < deadline, stream.getvalue()
        time.sleep(0.02)


def test_plain_mode_writes_a_summary_every_interval():
    stats = Statistics()
    stats.add("main.a", "main.a", estimated_rows=1000)
    stats.started("main.a", units=2)
    stats.rows("main.a", 250)
    out = io.StringIO()
    with Progress(stats, enabled=True, stream=out, interval=0.05):
        _wait_for(out, "0/1 tables loaded | 250 of ~1,000 rows (25%)")
        stats.set_state("main.a", TableState.REPLICATING)
        stats.cdc.applied(3, 7, [0.002, 0.004], "sqlite:9")
        _wait_for(out, "CDC: 7 changes in 3 transactions")
    text = out.getvalue()
    assert "main.a: replicating" in text and "latency p50" in text and "position sqlite:9" in text
    assert ESC not in text


def test_enabled_none_is_quiet_outside_a_terminal():
    out = io.StringIO()
    with Progress(Statistics(), stream=out) as progress:
        pass
    assert progress.mode == "off" and out.getvalue() == ""


def test_the_rich_view_shows_cdc_rates_and_latency():
    from rich.console import Console

    from replikit.pipeline.progress_live import LiveTable

    stats = Statistics()
    stats.add("main.orders", "public.orders", estimated_rows=10)
    stats.finish("main.orders", TableState.COMPLETED)
    stats.set_state("main.orders", TableState.REPLICATING)
    stats.count_changes("main.orders", "insert", 5)
    stats.cdc.applied(2, 5, [0.010], "pg:0/16B3748")
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(LiveTable(stats, io.StringIO(), 0.25).render())
    text = console.file.getvalue()
    assert re.search(r"main\.orders\s+Replicating.*5/0/0", text), text
    assert "CDC: 5 changes in 2 transactions" in text
    assert "latency p50 10.0 ms" in text and "position pg:0/16B3748" in text


def test_a_refused_copy_prints_no_done_line(tmp_path):
    import sqlite3
    import subprocess
    import sys

    src = tmp_path / "src.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.close()
    dst = f"sqlite:///{tmp_path / 'out.db'}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "replikit",
            "copy",
            f"sqlite:///{src}",
            dst,
            "--type",
            "t.nope=text",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "done in" not in out.stderr  # nothing ran: only the refusal is printed
    assert out.stderr.count("\n") == 1, out.stderr
