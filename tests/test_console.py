"""The console of a real ``ccrec`` process: the command's own output on the terminal, the
libraries' logs, warnings, native stderr lines and tracebacks in the log file (shown with
--verbose).

The command is ``ccrec data check`` on a small CSV, run in a subprocess whose
``data check`` first does what dependencies do: it connects Ray (the session's
instance, in the first test) and runs a Ray Data job, logs through library loggers,
warns, and writes to file descriptor 2 from outside Python's streams (as native code
and child processes do).
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOISY = """
import logging, os, sys, warnings
import ray
from ccrec import cli

command = cli.data.commands["check"]
check = command.callback

def noisy(**kwargs):
    if os.environ.get("NOISY_FAIL"):
        raise RuntimeError("boom [in a dependency]")
    if os.environ.get("NOISY_RAY"):
        ray.init(address=os.environ["NOISY_RAY"])
        ray.data.range(8).map_batches(lambda b: b).materialize()
    logging.getLogger("kafka.conn").info("library line: connected")
    logging.getLogger("ray.serve").warning("library line: graceful_shutdown failed")
    warnings.warn("library deprecation", DeprecationWarning, stacklevel=1)
    warnings.warn("library user warning", UserWarning, stacklevel=1)
    os.write(2, b"core_worker.cc:1 native line\\n")
    import threading
    raylet = threading.Thread(name="ray_listen_error_messages",
                              target=lambda: print("(raylet) graceful_shutdown failed: retried"))
    raylet.start()
    raylet.join()
    logging.getLogger("ccrec.data").info("our own line")
    check(**kwargs)
    if os.environ.get("NOISY_RAY"):
        ray.shutdown()

command.callback = noisy
sys.argv = ["ccrec", *sys.argv[1:]]
cli.main()
"""

LIBRARY_LINES = ("library line: connected", "graceful_shutdown failed", "library deprecation",
                 "library user warning", "core_worker.cc:1 native line",
                 "(raylet) graceful_shutdown failed: retried")


def run(tmp_path, *flags, fail=False, console="clean", ray_address=""):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,category_id,timestamp\n"
                      "u1,i1,c1,1700000000\nu1,i2,c2,1700900000\nu2,i1,c1,1700000500\n")
    logs = tmp_path / f"logs{len(flags)}{fail}"
    env = {**os.environ, "CCREC_LOG_DIR": str(logs), "CCREC_HOME": str(tmp_path / "home"),
           "CCREC_CONSOLE": console,
           "NOISY_RAY": ray_address,
           "NOISY_FAIL": "1" if fail else "", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", NOISY, *flags, "data", "check",
                           "--dataset", f"events:{events}"],
                          capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).parents[1])
    files = sorted(logs.glob("ccrec-*.log"))
    assert len(files) == (console == "clean" and "-v" not in flags and "--verbose" not in flags), (
        done.stdout, done.stderr)
    return done, files[0].read_text() if files else ""


def test_the_console_shows_our_lines_and_the_log_file_the_rest(ray_cluster, tmp_path):
    done, log = run(tmp_path, ray_address=ray_cluster.get_runtime_context().gcs_address)
    assert done.returncode == 0, done.stderr
    assert "rows         3 (click 3)" in done.stdout
    assert done.stderr.strip() == "our own line"
    for line in LIBRARY_LINES:
        assert line not in done.stdout + done.stderr
        assert line in log
    assert "ray" not in (done.stdout + done.stderr).lower()


def test_verbose_shows_the_libraries_too(tmp_path):
    done, _ = run(tmp_path, "--verbose")
    assert done.returncode == 0, done.stderr
    for line in LIBRARY_LINES:
        assert line in done.stdout + done.stderr


def test_a_service_keeps_every_line_on_stderr(tmp_path):
    """Not at a terminal and not asked for the clean console (a container): no log file,
    the records on stderr where the platform collects them."""
    done, _ = run(tmp_path, console="plain")
    assert done.returncode == 0, done.stderr
    assert "rows         3 (click 3)" in done.stdout
    for line in ("INFO kafka.conn: library line: connected",
                 "library line: graceful_shutdown failed",
                 "core_worker.cc:1 native line", "INFO ccrec.data: our own line"):
        assert line in done.stderr
    assert "(raylet) graceful_shutdown failed: retried" in done.stdout


@pytest.mark.parametrize("flags", [(), ("-v",)])
def test_an_unexpected_error_is_one_line_and_its_traceback_is_in_the_log(tmp_path, flags):
    done, log = run(tmp_path, *flags, fail=True)
    assert done.returncode == 1
    if flags:  # --verbose: the traceback itself
        assert "Traceback" in done.stderr and "RuntimeError: boom" in done.stderr
        assert log == ""
        return
    (path,) = (tmp_path / "logs0True").glob("ccrec-*.log")
    assert done.stderr == f"error: RuntimeError: boom [in a dependency] (traceback in {path})\n"
    assert "Traceback (most recent call last)" in log and "RuntimeError: boom" in log


def test_a_read_only_log_folder_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    from ccrec import console

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(console.LOG_DIR_ENV, str(blocked / "logs"))  # cannot be made
    monkeypatch.setattr(console.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    path, stream = console._open_log()
    stream.close()
    assert path.parent == (tmp_path / "tmp" / "ccrec-logs").resolve()


def test_a_muted_part_keeps_its_info_lines_off_the_terminal():
    from ccrec import console

    keep = console._OwnRecords()
    record = lambda name, level: logging.LogRecord(name, level, "", 0, "m", None, None)  # noqa: E731
    try:
        console.mute("streaming")
        assert not keep.filter(record("streaming.worker", logging.INFO))
        assert keep.filter(record("streaming.worker", logging.WARNING))
        assert keep.filter(record("ccrec.train.progress", logging.INFO))
        assert not keep.filter(record("kafka.conn", logging.WARNING))
        assert not keep.filter(record("streamingx", logging.INFO))
    finally:
        console._state.pop("muted", None)
