"""Logging and warnings, configured once at the CLI edge (library code only calls ``logging.getLogger``).

Messages go to stderr, data to stdout. ``-v``/``-q`` move the level (repeatable), ``--log-format json``
writes one JSON object per line (timestamp, level, logger, message) for log collectors.

| flags | pruna-hub's loggers | third-party loggers | progress bars, third-party deprecation warnings |
|---|---|---|---|
| ``-qq`` | ERROR | ERROR | off |
| ``-q`` | WARNING | WARNING | off |
| (none) | INFO | WARNING | off |
| ``-v`` | DEBUG | WARNING | on |
| ``-vv`` | DEBUG | DEBUG | on |
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

OUR_LOGGERS = ("pruna_hub", "smash", "registry_db")
SYNC_LOGGER = "pruna_hub.sync"
LOG_FORMATS = ("text", "json")
_HANDLER_NAME = "pruna-hub-cli"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: ``{"timestamp", "level", "logger", "message"}`` (+ ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-12-04 19:30:01 message``; warnings and errors name their level."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            stamp, _, rest = text.partition(" ")
            time_, _, message = rest.partition(" ")
            text = f"{stamp} {time_} {record.levelname.lower()}: {message}"
        return text


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the record (click's CliRunner swaps it per
    invocation; a handler holding the first one would write to a closed stream afterwards)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ assigns it; the property decides


def levels(verbosity: int) -> tuple[int, int]:
    """(our level, third-party level) for ``verbosity`` = number of -v minus number of -q."""
    if verbosity <= -2:
        return logging.ERROR, logging.ERROR
    if verbosity == -1:
        return logging.WARNING, logging.WARNING
    if verbosity == 0:
        return logging.INFO, logging.WARNING
    return logging.DEBUG, logging.DEBUG if verbosity >= 2 else logging.WARNING


def configure_logging(verbosity: int = 0, log_format: str = "text", *, stream: TextIO | None = None) -> None:
    """Install the one stderr handler on the root logger (replacing an earlier one of ours, so that tests
    invoking the CLI twice in a process do not print twice) and set the levels."""
    ours, others = levels(verbosity)
    handler = StderrHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonLinesFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(others)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)
    logging.captureWarnings(True)  # what warnings remain go through the same handler and format
    quiet_third_parties(verbose=verbosity >= 1)


def json_logging() -> bool:
    """Whether the CLI's handler is installed and writes JSON lines."""
    return any(
        h.get_name() == _HANDLER_NAME and isinstance(h.formatter, JsonLinesFormatter)
        for h in logging.getLogger().handlers
    )


def quiet_third_parties(*, verbose: bool) -> None:
    """Filter other libraries' FutureWarning/DeprecationWarning (transformers' ``past_key_values``
    deprecation, on every run) and their progress bars; ``-v`` shows them again. Ours always show."""
    if verbose:
        return
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("default", category=category, module=r"(pruna_hub|smash|registry_db)(\.|$)")
    # Read when huggingface_hub / transformers are imported, which the commands do lazily, after this.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def progress_reporter(name: str = SYNC_LOGGER) -> Callable[[str], None]:
    """A ``report(message)`` callable for the service's ``ctx.report``: each message an INFO record."""
    logger = logging.getLogger(name)

    def report(message: str) -> None:
        logger.info(message)

    return report
