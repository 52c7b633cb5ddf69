"""The key reference in docs/USAGE.md, generated from the schema.

    update_key_reference("docs/USAGE.md")     # `make docs` (pfd.cli.docs): rewrites the block between the markers

Only the text between BEGIN and END is replaced (a file without them is refused), through a temp file and
a rename. tests/config/test_config_schema.py fails when the file's block and `key_reference()` differ.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, require_file
from ..io import atomic_write
from .schema import FIXED, SCHEMA, SILENT, Key

__all__ = ["BEGIN", "END", "key_reference", "with_key_reference", "update_key_reference"]

BEGIN = "<!-- config keys: generated from pfd/config/schema.py by `make docs`; edit the schema, not this block -->"
END = "<!-- end of the generated config keys -->"
LEGEND = ("Flags: **hash**: part of `config_hash` (the key changes the evaluation feature or its heatmaps; "
          "checkpoints, indexes and metrics.json record the hash); **resume**: may change when a run is "
          "resumed (a change of any other key is refused; *not compared*: never reported); **new**: a key of "
          "this project, the others are the reference implementation's. *Reference-only* keys are accepted "
          "so the reference's files load, warned about when set to a value that would change the "
          "reference's behaviour, and dropped from the loaded config.")


def key_reference() -> str:
    """The markdown tables of every key, one per section, with the legend above them."""
    lines = [LEGEND]
    section = None
    for name, key in SCHEMA.items():
        here = name.split(".")[0] if "." in name else "Top level"
        if here != section:
            section = here
            lines += ["", f"**{section}**", "", "| key | default | allowed | meaning | flags |",
                      "|---|---|---|---|---|"]
        lines.append(f"| `{name}` | {_value(key.default)} | {_allowed(key)} | {_meaning(key)} | {_flags(key)} |")
    return "\n".join(lines)


def _value(value: Any) -> str:
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _allowed(key: Key) -> str:
    """The key's type, then what its checks accept."""
    listed = isinstance(key.default, list)
    each = " each" if listed else ""
    if listed:
        kind = f"{key.length} values: {key.parts}" if key.length else "list"
    else:
        kind = {bool: "true / false", int: "integer", float: "number", str: "text"}[type(key.default)]
    rules = []
    if key.choices and listed:
        rules.append("at least one of " + ", ".join(key.choices))
    elif key.choices:
        kind = "one of " + ", ".join(key.choices)
    if key.aliases:
        rules.append("the reference's " + ", ".join(f"{alias} = {name}" for alias, name in key.aliases.items()))
    if key.low is not None and key.high is not None:
        rules.append(f"in [{key.low}, {key.high}]{each}")
    elif key.low is not None:
        rules.append(f">= {key.low}{each}")
    if key.positive:
        rules.append(f"> 0{each}")
    if key.allowed:
        rules.append(key.allowed)
    return "; ".join([kind, *rules])


def _meaning(key: Key) -> str:
    if not key.reference_only:
        return key.doc
    switch = f", warned only while {key.only_with} is on" if key.only_with else ""
    return f"{key.doc}. *Reference-only*: no effect here ({key.reference_only}){switch}"


def _flags(key: Key) -> str:
    flags = ["hash"] if key.feature else []
    if key.resume != FIXED and not key.reference_only:
        flags.append("resume, *not compared*" if key.resume == SILENT else "resume")
    return ", ".join(flags + (["new"] if key.new else []))


def with_key_reference(text: str, where: str) -> str:
    """`text` (a markdown file's) with the block between BEGIN and END replaced by `key_reference()`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise InvalidInputError(f"{where}: no block between the markers {BEGIN!r} and {END!r} to write the key "
                                "reference into; add them where it goes")
    return text[:start + len(BEGIN)] + "\n" + key_reference() + "\n" + text[end:]


def update_key_reference(path: str | Path) -> bool:
    """Write `key_reference()` into the markdown file `path` between BEGIN and END (temp file, rename); returns
    whether the file changed. A missing file, or one without the markers, is an InvalidInputError."""
    path = require_file(path, "markdown file", "docs/USAGE.md or another file holding the markers")
    text = path.read_text()
    new = with_key_reference(text, str(path))
    if new != text:
        atomic_write(path, lambda f: f.write(new.encode()))
    return new != text
