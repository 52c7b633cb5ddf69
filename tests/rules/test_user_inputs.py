"""Every error a user can cause is a UserError, and every command meets each bad input the same way
(issue 23's third rule): one `error:` line naming the file, exit status 2, and nothing written.

The inputs are the ones issue 23 found handled poorly: a YAML syntax error, a checkpoint whose weights
hold NaN, a damaged keypoint file and a damaged image, each given to every command that reads it.
The output-path cases (a user's file or folder, a read-only folder, a full disk) are walked in
test_output_rules.py and test_full_disk.py.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import torch

import pfd
from pfd.cli import compare as compare_command
from pfd.cli import convert as convert_command
from pfd.cli import export as export_command
from pfd.engine.logger import setup_logger
from pfd.engine.trainer import Trainer
from pfd.errors import UserError
from pfd.export import ExportCheckError
from pfd.pose import __main__ as pose_command

from engine_tiny import DEMO_CONFIG, exit_status, load_script, make_data, reference_layout, tiny_config, tiny_opts

# Exceptions of ours that report a bug rather than a user's input, each with why.
BUG_ERRORS = {ExportCheckError: "the exported ONNX model disagrees with PyTorch: a fault of the exporter"}


def exception_classes() -> set[type]:
    """Every exception class defined in a pfd module (the `__main__` modules are entry points, not imported)."""
    found = set()
    for module in pkgutil.walk_packages(pfd.__path__, "pfd."):
        if module.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__.startswith("pfd"):
                found.add(value)
    return found


def test_every_exception_of_ours_is_a_user_error_or_a_named_bug():
    classes = exception_classes()
    assert len(classes) >= 10, classes  # the walk really found the package's errors
    assert set(BUG_ERRORS) <= classes
    not_user = sorted(c.__qualname__ for c in classes - set(BUG_ERRORS) if not issubclass(c, UserError))
    assert not_user == []


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The tiny data, a good checkpoint of ours, and one bad input of each kind."""
    root = make_data(tmp_path_factory.mktemp("inputs"))
    trainer = Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false"))
    trainer.save(0, improved=False)
    state = torch.load(root / "run" / "last.pth", map_location="cpu", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, root / "nan.pth")
    torch.save({"state_dict": reference_layout(state["model"])}, root / "nan_reference.pth")
    (root / "bad.yaml").write_text("MODEL:\n  NAME: [pfd\nSOLVER:\n  BASE_LR: 0.1\n")
    (root / "cut.json").write_text('{"format": "pfd-keypoints-v1", "keypoints": {"a.jpg": [[1, 2')
    (root / "empty.jpg").write_bytes(b"")
    return {"root": root, "good": root / "run" / "last.pth", "nan": root / "nan.pth",
            "nan_reference": root / "nan_reference.pth", "yaml": root / "bad.yaml", "keypoints": root / "cut.json",
            "image": root / "empty.jpg"}


def command(name: str, inputs: dict[str, Path], out: Path, config: Path = DEMO_CONFIG, weights: str = "good",
            extra: tuple[str, ...] = ()) -> tuple:
    """(main, argv) of command `name` writing to `out`, with `config`, checkpoint `weights` and overrides `extra`."""
    root, ckpt = inputs["root"], str(inputs[weights])
    opts = [*tiny_opts(root, out), *extra]
    gallery = str(root / "synthetic" / "bounding_box_test")
    return {
        "train": (load_script("train").main, ["--config", str(config), *opts]),
        "test": (load_script("test").main, ["--config", str(config), *opts, "TEST.WEIGHT", ckpt]),
        "pose": (pose_command.main, ["--config", str(config), *opts, "MODEL.POSE_CACHE_DIR", str(out)]),
        "compare": (compare_command.main, ["--config", str(config), "--out", str(out), *opts]),
        "index": (load_script("query").main, ["index", "--config", str(config), "--weights", ckpt, "--gallery",
                                              gallery, "--out", str(out), *opts]),
        "export": (export_command.main, ["--weights", ckpt, "--out", str(out)]),
        "convert": (convert_command.main, [ckpt, str(out)]),
    }[name]


def assert_refused(main, argv, out: Path, names: Path, capsys) -> str:
    """`main(argv)` exits 2 with one `error:` line naming `names`, and `out` was not created."""
    setup_logger(None)  # the console log of this test's stderr (an earlier command's handler holds a closed one)
    capsys.readouterr()
    status = exit_status(main, argv)
    err = capsys.readouterr().err
    errors = [line for line in err.split("\n") if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert str(names) in errors[0], errors[0]
    assert not out.exists(), sorted(p.name for p in out.rglob("*")) if out.is_dir() else out
    return errors[0]


@pytest.mark.parametrize("name", ["train", "test", "pose", "compare", "index"])
def test_a_yaml_syntax_error_names_file_line_and_column(name, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    line = assert_refused(*command(name, inputs, out, config=inputs["yaml"]), out, inputs["yaml"], capsys)
    assert re.search(r"bad\.yaml, line \d+, column \d+: YAML syntax error", line), line


@pytest.mark.parametrize("name,weights,suffix", [("test", "nan", ""), ("index", "nan", ""),
                                                 ("export", "nan", ".onnx"), ("convert", "nan_reference", ".pth")])
def test_a_checkpoint_holding_nan_is_refused_at_load(name, weights, suffix, inputs, tmp_path, capsys):
    out = tmp_path / f"out{suffix}"
    line = assert_refused(*command(name, inputs, out, weights=weights), out, inputs[weights], capsys)
    assert "NaN" in line


@pytest.mark.parametrize("name", ["train", "test", "pose", "compare", "index"])
def test_a_damaged_keypoint_file_is_named_before_anything_is_written(name, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ("MODEL.POSE_BACKEND", "file", "MODEL.POSE_FILE", str(inputs["keypoints"]))
    line = assert_refused(*command(name, inputs, out, extra=extra), out, inputs["keypoints"], capsys)
    assert "invalid JSON" in line


def test_a_damaged_query_image_is_named_and_no_picture_is_written(inputs, tmp_path, capsys):
    """query.py search with an empty image file (the index is never opened: the image is checked first)."""
    out = tmp_path / "search.png"
    argv = ["search", "--index", str(tmp_path / "no_index"), "--image", str(inputs["image"]), "--out", str(out)]
    assert_refused(load_script("query").main, argv, out, inputs["image"], capsys)
