"""pfd/cli holds every command: pip installs each as `pfd-NAME`, the scripts and the `python -m` homes only run
it, and every parser gets `--config`, the KEY VALUE overrides, `--debug` and its program name from the one
shared helper (pfd.cli.common)."""
import argparse
import importlib
import importlib.machinery
import inspect
import os
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pfd.cli.common import one_line_errors, program_name
from pfd.errors import InvalidInputError

from engine_tiny import REPO, exit_status, load_script

# command -> (how else it is run: a top-level script, a `python -m` home, or for `make docs` its own module; the
# shortest argv it accepts; its --config: "required", "optional" or None for a command that reads no config and
# takes no overrides). query's two subcommands are listed as `query index` and `query search`.
COMMANDS = {
    "train": ("train.py", ["--config", "c.yaml"], "required"),
    "test": ("test.py", ["--config", "c.yaml"], "required"),
    "query index": ("query.py", ["--config", "c.yaml", "--weights", "w.pth", "--gallery", "g", "--out", "o"],
                    "required"),
    "query search": ("query.py", ["--index", "i", "--image", "p.jpg"], "optional"),
    "pose": ("pfd.pose", [], "optional"),
    "synthetic": ("pfd.data.synthetic", ["--out", "o"], None),
    "occlude": ("pfd.data.occlude", ["--dataset", "d", "--out", "o"], None),
    "compare": ("pfd.compare", ["--config", "c.yaml", "--out", "o"], "required"),
    "export": ("pfd.export", ["--weights", "w.pth", "--out", "m.onnx"], "optional"),
    "convert": ("pfd.model.convert", ["a.pth", "b.pth"], None),
    "serve": ("pfd.serve", ["--index", "i"], None),
    "train_pose": ("pfd.cli.train_pose", ["--config", "c.yaml", "--out", "o.pth"], "required"),
    "docs": ("pfd.cli.docs", [], None),  # a tool for the repository's docs/USAGE.md, not installed
}
INSTALLED = sorted({command.split()[0] for command in COMMANDS} - {"docs"})


def installed_name(name: str) -> str:
    """The installed command of pfd.cli.NAME: pfd-NAME, with hyphens for underscores (pfd-train-pose)."""
    return f"pfd-{name.replace('_', '-')}"


MODULE_HOMES = {name: home for name, (home, _, _) in COMMANDS.items()  # the `python -m` homes: __main__ shims
                if not home.endswith(".py") and not home.startswith("pfd.cli.")}


def parse(command: str, argv: list[str]) -> argparse.Namespace:
    """`command`'s options as its main reads them (query's subcommand word goes first)."""
    name, _, sub = command.partition(" ")
    return importlib.import_module(f"pfd.cli.{name}").parse_args([sub, *argv] if sub else argv)


def installed_commands() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: {command: "module:function"} (skipped on Python 3.10: no TOML reader)."""
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_pip_installs_each_pfd_cli_command_and_the_scripts_and_homes_run_the_same_main():
    assert len(INSTALLED) == 11
    assert installed_commands() == {installed_name(name): f"pfd.cli.{name}:main" for name in INSTALLED}
    for name in INSTALLED:
        main = importlib.import_module(f"pfd.cli.{name}").main
        assert inspect.signature(main).parameters["argv"].default is None, name
    for script in ("train", "test", "query"):
        assert load_script(script).main is importlib.import_module(f"pfd.cli.{script}").main
    for name, home in MODULE_HOMES.items():
        assert importlib.import_module(f"{home}.__main__").main is importlib.import_module(f"pfd.cli.{name}").main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_parser_has_the_shared_arguments_where_it_reads_a_config(command, capsys):
    _, minimal, config = COMMANDS[command]
    assert parse(command, [*minimal, "--debug"]).debug and not parse(command, minimal).debug
    if config is None:  # neither --config nor overrides: argparse refuses them (exit status 2)
        for extra in (["--config", "c.yaml"], ["MODEL.DEVICE", "cpu"]):
            with pytest.raises(SystemExit) as exit_info:
                parse(command, [*minimal, *extra])
            assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
        return
    # the overrides may come before, between and after the options
    args = parse(command, ["MODEL.DEVICE", "cpu", *minimal, "--debug", "SOLVER.SEED", "3"])
    assert args.opts == ["MODEL.DEVICE", "cpu", "SOLVER.SEED", "3"] and args.debug
    at = minimal.index("--config") if "--config" in minimal else len(minimal)
    without_config = minimal[:at] + minimal[at + 2:]
    if config == "required":
        with pytest.raises(SystemExit):
            parse(command, without_config)
        assert "the following arguments are required: --config" in capsys.readouterr().err
    else:
        assert parse(command, without_config).config is None


@pytest.fixture
def run_as(monkeypatch):
    """run_as(main_spec, argv0): make this process look as if started as a script or installed command
    (`main_spec` None) or as `python -m` of the module `main_spec`, with sys.argv[0] = `argv0`."""
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python3")

    def run_as(main_spec: str | None, argv0: str) -> None:
        main = types.ModuleType("__main__")
        main.__spec__ = None if main_spec is None else importlib.machinery.ModuleSpec(main_spec, None)
        monkeypatch.setitem(sys.modules, "__main__", main)
        monkeypatch.setattr(sys, "argv", [argv0])
    return run_as


def test_the_program_name_is_what_the_user_typed(run_as):
    run_as(None, "/opt/venv/bin/pfd-serve")  # pip's wrapper script
    assert program_name() == "pfd-serve"
    run_as(None, "train.py")
    assert program_name() == "train.py"
    run_as("pfd.serve.__main__", "/src/pfd/serve/__main__.py")  # python3 -m pfd.serve (a package)
    assert program_name() == "python3 -m pfd.serve"
    run_as("pfd.cli.train", "/src/pfd/cli/train.py")  # python3 -m pfd.cli.train (a module)
    assert program_name() == "python3 -m pfd.cli.train"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_usage_line_names_the_program_as_run(command, run_as, capsys):
    name, _, sub = command.partition(" ")
    home = COMMANDS[command][0]
    if home.endswith(".py"):
        runs = [(None, f"/src/{home}", home)]
    else:  # a module, or a package's __main__, run with -m
        runs = [(home if home.startswith("pfd.cli.") else f"{home}.__main__", f"/src/{home}", f"python3 -m {home}")]
    if name in INSTALLED:
        runs.append((None, f"/opt/venv/bin/{installed_name(name)}", installed_name(name)))
    for main_spec, argv0, prog in runs:
        run_as(main_spec, argv0)
        with pytest.raises(SystemExit) as exit_info:
            parse(command, ["--help"])
        usage = f"usage: {prog} {sub}".rstrip() + " "
        assert exit_info.value.code == 0 and capsys.readouterr().out.startswith(usage), command


def test_a_user_error_in_a_command_is_one_line_and_exit_2_and_debug_keeps_it(capsys):
    with pytest.raises(SystemExit) as exit_info, one_line_errors(argparse.Namespace(debug=False)):
        raise InvalidInputError("--coverage 'x': expected MIN,MAX")
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: --coverage 'x': expected MIN,MAX\n"
    with pytest.raises(InvalidInputError), one_line_errors(argparse.Namespace(debug=True)):
        raise InvalidInputError("shown with its traceback")
    with pytest.raises(KeyError), one_line_errors(argparse.Namespace(debug=False)):
        raise KeyError("a bug keeps its traceback")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # runpy's warning: the package imported its own __main__
@pytest.mark.parametrize("name", MODULE_HOMES)
def test_each_python_m_home_runs_its_command(name, monkeypatch, capsys):
    """`python -m HOME --help`, in this process: runpy runs the home's __main__ as `__main__`, as -m does."""
    home = MODULE_HOMES[name]
    monkeypatch.delitem(sys.modules, f"{home}.__main__", raising=False)  # as imported by another test
    monkeypatch.setattr(sys, "argv", [home, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(home, run_name="__main__", alter_sys=True)
    usage = f"usage: {Path(sys.executable).name} -m {home} "
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith(usage)


@pytest.mark.slow
def test_a_python_m_home_answers_help_in_its_own_process():
    """The real `python -m pfd.serve --help` (every home's is checked in process above), with runpy's warning
    about a module run twice made an error."""
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "pfd.serve", "--help"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    usage = f"usage: {Path(sys.executable).name} -m pfd.serve "
    assert done.returncode == 0 and done.stdout.startswith(usage), done.stderr[-2000:]


def test_make_docs_writes_the_key_reference_once_and_refuses_a_missing_file_in_one_line(tmp_path, capsys):
    from pfd.cli.docs import main
    from pfd.config.docs import BEGIN, END, key_reference

    page = tmp_path / "USAGE.md"
    page.write_text(f"# Keys\n{BEGIN}\nstale\n{END}\n")
    main([str(page)])
    assert page.read_text() == f"# Keys\n{BEGIN}\n{key_reference()}\n{END}\n"
    main([str(page)])
    assert capsys.readouterr().out.splitlines() == [f"{page}: key reference updated",
                                                    f"{page}: key reference already up to date"]
    assert exit_status(main, [str(tmp_path / "absent.md")]) == 2
    assert capsys.readouterr().err == f"error: markdown file not found: {tmp_path / 'absent.md'}\n"
