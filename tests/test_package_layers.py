"""Package layering: a lower package never imports a higher one (imports read from the source, lazy ones included)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PFD = Path(__file__).resolve().parents[1] / "pfd"
BELOW_ENGINE = ("pose", "model", "data", "retrieval", "config")
BASE_MODULES = ("io.py", "device.py", "state_dict.py", "precision.py", "errors.py")  # used by every package


def imported_modules(path: Path, root: Path = PFD) -> set[str]:
    """Absolute names of every module `path` (a file under `root`, the pfd folder) imports, anywhere in
    the file, relative imports resolved."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    package = parts if path.name == "__init__.py" else parts[:-1]
    package = package[:-1] if package[-1] == "__init__" else package
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from .. import engine`
    return names


def test_import_parser_sees_relative_and_lazy_imports(tmp_path):
    fake = tmp_path / "pfd" / "pose" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..engine.distributed import resolve_device\nfrom .. import engine\n")
    assert {"pfd.engine.distributed", "pfd.engine"} <= imported_modules(fake, tmp_path / "pfd")


@pytest.mark.parametrize("package", BELOW_ENGINE)
def test_packages_below_the_engine_never_import_it(package):
    files = sorted((PFD / package).rglob("*.py"))
    assert files
    offenders = {f"{f.relative_to(PFD.parent)}: {name}" for f in files for name in imported_modules(f)
                 if name == "pfd.engine" or name.startswith("pfd.engine.")}
    assert not offenders, f"pfd.{package} imports pfd.engine: {sorted(offenders)}"


@pytest.mark.parametrize("module", BASE_MODULES)
def test_base_modules_import_only_base_modules(module):
    base = {"pfd." + m.removesuffix(".py") for m in BASE_MODULES}
    names = {n for n in imported_modules(PFD / module) if (n == "pfd" or n.startswith("pfd."))
             and not any(n == b or n.startswith(b + ".") for b in base)}
    assert not names, f"pfd/{module} imports {sorted(names)}"


def test_the_engine_never_imports_the_api_layer():
    """pfd.api (the Python API), pfd.query (query.py's work) and pfd.export sit above pfd.engine."""
    top = ("pfd.api", "pfd.query", "pfd.export")
    offenders = {f"{f.relative_to(PFD.parent)}: {name}" for f in sorted((PFD / "engine").rglob("*.py"))
                 for name in imported_modules(f) if name in top or name.startswith(tuple(t + "." for t in top))}
    assert not offenders, f"pfd.engine imports the API layer: {sorted(offenders)}"


def test_the_synthetic_generator_starts_without_torch():
    """`python -m pfd.data.synthetic` stays light (torch alone takes ~2 s to import): its modules and
    `pfd.pose.keypoints` load no torch; the other `pfd.pose` exports load on first use."""
    code = ("import sys, pfd.data.synthetic.__main__, pfd.pose.keypoints; print('torch' in sys.modules); "
            "from pfd.pose import load_or_build; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PFD.parent, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
