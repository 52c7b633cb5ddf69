"""The thin scripts accept their options before or after the KEY VALUE overrides, and they and the
package commands (`python -m pfd.pose` ...) report an expected error as one line with exit status 2
(the traceback only with --debug)."""
import importlib
import re
from pathlib import Path

import pytest
import torch

from pfd.config import ConfigError
from pfd.errors import InvalidInputError, UserError

from engine_tiny import DEMO_CONFIG, load_script


def test_train_resume_after_overrides():
    args = load_script("train").parse_args(["--config", "c.yaml", "SOLVER.BASE_LR", "0.1", "--resume"])
    assert (args.config, args.resume, args.opts) == ("c.yaml", "auto", ["SOLVER.BASE_LR", "0.1"])
    args = load_script("train").parse_args(["--config", "c.yaml", "--resume", "x.pth", "SOLVER.SEED", "-1"])
    assert (args.resume, args.opts) == ("x.pth", ["SOLVER.SEED", "-1"])


def test_test_config_after_overrides():
    args = load_script("test").parse_args(["TEST.WEIGHT", "w.pth", "--config", "c.yaml"])
    assert (args.config, args.opts) == ("c.yaml", ["TEST.WEIGHT", "w.pth"])


def test_query_options_after_overrides():
    args = load_script("query").parse_args(["search", "--index", "idx", "--image", "p.jpg", "MODEL.DEVICE", "cpu",
                                            "--topk", "3"])
    assert (args.topk, args.opts) == (3, ["MODEL.DEVICE", "cpu"])


@pytest.mark.parametrize("script, override, expected", [
    ("train", ["SOLVER.MAX_EPOCHS", "0"], "SOLVER.MAX_EPOCHS must be >= 1, got 0"),
    ("train", ["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH must be >= 1, got 0"),
    ("test", ["MODEL.DEVICE", "gpu"], "MODEL.DEVICE must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train", ["MODEL.IF_LABELSMOOTH", "onn"], "MODEL.IF_LABELSMOOTH must be one of on, off, got 'onn'"),
])
def test_expected_errors_are_one_line_and_exit_2(script, override, expected, capsys):
    main = load_script(script).main
    argv = ["--config", str(DEMO_CONFIG), *override]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == f"error: command line: {expected}\n"
    with pytest.raises(ConfigError, match=expected.split(",")[0]):  # --debug: the exception and its traceback
        main(argv + ["--debug"])


def _package_command_cases(tmp: Path) -> dict[str, tuple[list[str], type, str]]:
    """pfd.cli command (`python -m pfd.pose` ...) -> (argv with one bad input, the UserError it raises, words of
    its message)."""
    foreign = tmp / "foreign.pth"
    torch.save({"head.weight": torch.zeros(2)}, foreign)
    return {
        "pose": (["--config", str(DEMO_CONFIG), "MODEL.DEVICE", "gpu"], ConfigError, "MODEL.DEVICE must be"),
        "synthetic": (["--out", str(tmp / "syn"), "--ids-train", "0"], InvalidInputError, "ids_train=0"),
        "occlude": (["--dataset", str(tmp / "no_data"), "--out", str(tmp / "occ"), "--coverage", "0.2"],
                    InvalidInputError, "--coverage '0.2': expected MIN,MAX"),
        "compare": (["--config", str(DEMO_CONFIG), "--out", str(tmp / "cmp"), "--only", "nothing"],
                    InvalidInputError, "no such variant"),
        "export": (["--weights", str(tmp / "missing.pth"), "--out", str(tmp / "m.onnx")], UserError, "missing.pth"),
        "convert": ([str(foreign), str(tmp / "out.pth")], InvalidInputError,
                    "layout 'unknown' is not a reference checkpoint"),
        "serve": (["--index", str(tmp / "no_index")], UserError, "manifest.json is missing"),
    }


@pytest.mark.parametrize("command", ["pose", "synthetic", "occlude", "compare", "export", "convert", "serve"])
def test_package_commands_report_expected_errors_like_the_scripts(command, tmp_path, capsys):
    argv, error, words = _package_command_cases(tmp_path)[command]
    main = importlib.import_module(f"pfd.cli.{command}").main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1
    with pytest.raises(error, match=re.escape(words)):  # --debug: the exception and its traceback
        main(argv + ["--debug"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pth"]  # nothing written
