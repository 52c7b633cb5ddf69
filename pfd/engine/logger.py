"""Logging for runs: a human log file (`log.txt`) and machine-readable JSON lines (`metrics.jsonl`).

Only rank 0 writes files; other ranks log warnings and errors to stderr.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

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
        file_handler = logging.FileHandler(Path(output_dir) / "log.txt")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


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
        record = {"kind": kind, "time": round(time.time(), 3), **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
