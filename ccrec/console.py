"""The console of every ``ccrec`` command: our own lines on the terminal, everything
else in a log file.

:func:`setup` (called once by the ``ccrec`` entry point, and so by ``make demo``)
gives a person at a terminal the *clean console* (``CCREC_CONSOLE=clean`` asks
for it anywhere, ``make demo`` and the tests do; ``CCREC_CONSOLE=plain`` turns it
off):

* every log record goes to a log file, ``runs/logs/ccrec-<time>-<pid>.log``
  (``$CCREC_LOG_DIR`` sets the folder; the temporary folder when the working
  directory is read-only); commands that start Ray print its path
  (:func:`announce`), and so does an unexpected error, whose traceback is there;
* the terminal shows the records of CCRec's own packages (:data:`OWN`) at INFO
  and above, as plain lines, and what the commands print themselves
  (:data:`console`, ``click.echo``);
* file descriptors 1 and 2 go to the log file, and so does ``sys.stderr``: what
  native code and child processes write (Ray's core worker and raylet, the
  broker), the libraries' own handlers, warnings and progress bars, and a
  library's traceback at exit all land there. ``sys.stdout`` (but for Ray's
  background threads) and :data:`console` keep writing to the terminal through
  duplicates of the original descriptors.

With ``--verbose`` nothing is redirected and every record (at DEBUG) and warning
reaches the terminal. A service (stderr not a terminal: a container, a pipe)
gets every INFO record on stderr, where its platform collects logs.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

#: Top-level packages whose log records are the product's own output.
OWN = ("ccrec", "demo", "serve", "streaming", "tune", "features", "benchmarks")
#: Environment variable naming the log folder.
LOG_DIR_ENV = "CCREC_LOG_DIR"
#: Environment variable choosing the console: ``clean`` or ``plain`` (default: clean on a
#: terminal).
CONSOLE_ENV = "CCREC_CONSOLE"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_state: dict = {}


class _Terminal(io.TextIOBase):
    """The terminal's stderr: the saved descriptor after :func:`setup` redirected fd 2,
    else ``sys.stderr`` at the time of writing (a test runner may swap it)."""

    def _target(self):
        return _state.get("terminal") or sys.stderr

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


#: The terminal (stderr side): steps, statuses, warnings, errors.
terminal = _Terminal()
#: The shared rich console on it.
console = Console(file=terminal, highlight=False, soft_wrap=True)


def log_dir() -> Path:
    return Path(os.environ.get(LOG_DIR_ENV) or "runs/logs")


def log_path() -> Path | None:
    """This process's log file (None before :func:`setup`)."""
    return _state.get("path")


def is_verbose() -> bool:
    return bool(_state.get("verbose"))


class _OwnRecords(logging.Filter):
    """What the terminal shows: our own records at INFO+, or everything with --verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _state.get("verbose"):
            return True
        if record.name.split(".", 1)[0] not in OWN or record.levelno < logging.INFO:
            return False
        return record.levelno >= logging.WARNING or not any(
            record.name == m or record.name.startswith(m + ".") for m in _state.get("muted", ()))


class _Plain(logging.Formatter):
    """Our lines as they are; a warning or an error says so; no tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


class _Stdout(io.TextIOBase):
    """``sys.stdout`` of the clean console: the terminal, except for Ray's background
    threads (named ``ray_…``; the driver's error listener prints the raylet's messages,
    such as a failed ServeController.graceful_shutdown, to stdout), whose lines go to the
    log file."""

    def __init__(self, terminal: io.TextIOWrapper, log_file) -> None:
        self._terminal, self._log = terminal, log_file

    def _target(self):
        return self._log if threading.current_thread().name.startswith("ray_") else self._terminal

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._terminal.flush()
        self._log.flush()

    def isatty(self) -> bool:
        return self._terminal.isatty()

    def fileno(self) -> int:
        return self._terminal.fileno()

    @property
    def encoding(self) -> str:
        return self._terminal.encoding


def _duplicate(fd: int, like) -> io.TextIOWrapper:
    """A line-buffered text stream on a duplicate of ``fd``."""
    encoding = getattr(like, "encoding", None) or "utf-8"
    return io.TextIOWrapper(os.fdopen(os.dup(fd), "wb", buffering=0), encoding=encoding,
                            errors="replace", line_buffering=True, write_through=True)


def _redirectable() -> bool:
    """True in a real process whose sys.stdout/sys.stderr are descriptors 1 and 2 (not a
    test runner's capture objects)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def clean_wanted() -> bool:
    """The clean console is for people: on when stderr is a terminal, or when
    ``CCREC_CONSOLE=clean`` (``make demo``, tests); ``CCREC_CONSOLE=plain`` turns it off.
    Services in containers keep every line on stderr, where their platform collects it."""
    mode = os.environ.get(CONSOLE_ENV, "").lower()
    if mode in ("clean", "plain"):
        return mode == "clean"
    try:
        return os.isatty(2)
    except OSError:
        return False


def _open_log() -> tuple[Path, io.TextIOWrapper] | None:
    """The log file, in :func:`log_dir` or else the temporary folder (a read-only
    working directory); None when neither can be written."""
    name = f"ccrec-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "ccrec-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = (folder / name).resolve()
            return path, open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        except OSError:
            continue
    return None


def setup(verbose: bool = False) -> Path | None:
    """Configure the console once per process; returns the log file's path, if any.

    * The clean console (:func:`clean_wanted`, not ``verbose``): everything as the
      module docstring says.
    * ``verbose``: every record at DEBUG and every warning on stderr.
    * Otherwise (a service, a pipe): every record at INFO on stderr, with time, level
      and logger.

    Under a test runner's output capture (sys.stdout/sys.stderr are not descriptors 1
    and 2) it configures nothing.
    """
    if "configured" in _state or not _redirectable():
        return _state.get("path")
    _state.update(configured=True, verbose=verbose)
    opened = _open_log() if clean_wanted() and not verbose else None
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if opened is None:
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format=FILE_FORMAT, stream=sys.stderr)
        return None
    path, log_file = opened
    _state.update(path=path, file=log_file)
    sys.stdout.flush()
    sys.stderr.flush()
    stdout, stderr = _duplicate(1, sys.stdout), _duplicate(2, sys.stderr)
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    sys.stdout, sys.stderr = _Stdout(stdout, log_file), log_file
    _state["terminal"] = stderr
    root.setLevel(logging.INFO)
    to_file = logging.StreamHandler(log_file)
    to_file.setLevel(logging.INFO)  # a library logger set to DEBUG stays out
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    root.addHandler(to_file)
    to_terminal = logging.StreamHandler(terminal)
    to_terminal.setFormatter(_Plain())
    to_terminal.addFilter(_OwnRecords())
    root.addHandler(to_terminal)
    logging.captureWarnings(True)
    quiet_libraries()
    return path


def quiet_libraries() -> None:
    """Send the libraries' log records through the root handlers only (file; terminal with
    --verbose) and turn off Ray Data's progress bars. Call it again after a library
    configures logging (``ray.init`` does)."""
    if "path" not in _state:
        return
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name.split(".", 1)[0] in OWN:
            continue
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    if "ray.data" in sys.modules:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False


def mute(*names: str) -> None:
    """Keep these loggers' INFO records off the terminal (the log file still has them): a
    command that runs a part in the background, as the demo runs the stream worker."""
    _state["muted"] = (*_state.get("muted", ()), *names)


def announce() -> None:
    """Print where the libraries' logs go (once), for commands that start Ray or Serve."""
    if "path" in _state and not _state.get("announced"):
        _state["announced"] = True
        console.print(f"[dim]logs of Ray, Serve and the other libraries → {_state['path']}[/]")


def report_failure(exc: BaseException) -> None:
    """An unexpected error: its traceback to the log file, one line to the terminal."""
    import traceback

    log_file = _state.get("file")
    traceback.print_exception(exc, file=log_file or sys.stderr)
    (log_file or sys.stderr).flush()
    where = f" (traceback in {_state['path']})" if log_file is not None else ""
    console.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}{where}')}")
