"""`pip install` of the project gives working commands: a fresh virtual environment gets the project from a copy
of the checkout (no network: `--no-deps --no-index`; the dependencies are the project venv's, seen through a .pth
file), then three installed commands' --help (each named as typed), one real run and one refused input run from
outside the checkout."""
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(*argv, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with the project pip-installed from a copy of the checkout (so no build/ or egg-info lands in it)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(REPO / "pfd", source / "pfd", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip()
    # torch, timm, pip, setuptools ...: the project venv's (this interpreter's), after the new venv's own packages
    (Path(site) / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", source,
               cwd=tmp)
    assert done.returncode == 0, done.stderr
    return venv


def test_the_installed_package_is_the_venvs_with_its_page(venv):
    where = run(venv / "bin" / "python", "-c", "import pfd.serve.app as a; print(a.__file__, a.STATIC)",
                cwd=venv.parent).stdout.split()
    assert Path(where[0]).is_relative_to(venv)  # not the checkout's
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in Path(where[1]).iterdir()}


def test_installed_commands_answer_help(venv):
    train = run(venv / "bin" / "pfd-train", "--help", cwd=venv.parent)
    assert train.returncode == 0 and train.stdout.startswith("usage: pfd-train") and "--resume" in train.stdout
    search = run(venv / "bin" / "pfd-query", "search", "--help", cwd=venv.parent)
    assert search.returncode == 0 and search.stdout.startswith("usage: pfd-query search") and "--topk" in search.stdout
    serve = run(venv / "bin" / "pfd-serve", "--help", cwd=venv.parent)  # named as typed, not `python -m pfd.serve`
    assert serve.returncode == 0 and serve.stdout.startswith("usage: pfd-serve ") and "--index" in serve.stdout


def test_an_installed_command_runs(venv, tmp_path):
    out = tmp_path / "synthetic"
    done = run(venv / "bin" / "pfd-synthetic", "--out", out, "--ids-train", "2", "--ids-test", "2",
               "--images-per-id", "2", "--distractors", "0", "--junk", "0", "--workers", "1", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "bounding_box_train").glob("*.jpg"))) == 4  # 2 ids x 2 images
    assert json.loads((out / "keypoints.json").read_text())


def test_an_installed_command_refuses_a_missing_config_in_one_line(venv, tmp_path):
    done = run(venv / "bin" / "pfd-train", "--config", tmp_path / "absent.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"error: config file not found: {tmp_path / 'absent.yaml'}\n"
