"""Logging for runs: a human log file (`log.txt`) and machine-readable JSON lines (`metrics.jsonl`).

Only rank 0 writes files; other ranks log warnings and errors to stderr. A full disk under either file
ends the command with one line naming it (DiskFullError), as for every other output; what was written
before stays. A record torn by a kill or a full disk is closed with a newline by the next append, and
readers of metrics.jsonl skip it.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from ..io import disk_full_cause, disk_full_error, disk_full_reported

__all__ = ["setup_logger", "MetricsWriter"]


def setup_logger(output_dir: str | Path | None, rank: int = 0, name: str = "pfd") -> logging.Logger:
    """The `pfd` logger: stderr (rank 0, INFO; others WARNING) and OUTPUT_DIR/log.txt on rank 0.

    stdout is left to results (the tables test.py and query.py print)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):  # a second run in the same process starts clean
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if rank == 0 and output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        file_handler = RunLogHandler(Path(output_dir) / "log.txt")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


class RunLogHandler(logging.FileHandler):
    """log.txt: a full disk raises DiskFullError naming the file, where logging would print a traceback
    and carry on (every later line failing the same way)."""

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        full = disk_full_cause(err)
        if full is None:
            super().handleError(record)
            return
        raise disk_full_error(Path(self.baseFilename), full, "the log written so far is kept") from err


class MetricsWriter:
    """Appends one JSON object per line to OUTPUT_DIR/metrics.jsonl (a no-op off rank 0)."""

    def __init__(self, output_dir: str | Path, enabled: bool = True, filename: str = "metrics.jsonl"):
        self.path = Path(output_dir) / filename
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **values) -> None:
        if not self.enabled:
            return
        line = json.dumps({"kind": kind, "time": round(time.time(), 3), **values}) + "\n"
        with disk_full_reported(self.path, "the records written so far are kept"), self.path.open("ab+") as f:
            if f.tell() > 0:  # "a" mode starts at the end
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last record (a kill, a full disk): end it first
                    line = "\n" + line
            f.write(line.encode())
