"""Package layering: a lower package never imports a higher one (imports read from the source, lazy ones included)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PFD = Path(__file__).resolve().parents[2] / "pfd"
# A module imports only modules of lower layers and of its own package (or base module). The `python -m` homes
# (`pfd/pose/__main__.py` ...) are exempt: each only runs its command in pfd.cli, the top layer (a test says so).
LAYERS = (
    ("errors", "precision", "lazy", "skeleton"),  # the base modules import nothing of ours ...
    ("io", "state_dict", "image", "device"),  # ... or only errors (device: its MODEL.DEVICE errors are UserErrors)
    ("config", "retrieval", "distributed"),  # distributed: torchrun's process group, on device's resolver
    ("pose",),  # keypoint definitions, estimators, the keypoint cache
    ("data", "model"),  # both build on pose's keypoints; neither imports the other
    ("inference",),  # checkpoint -> eval model, the eval forward loop, a query photo's keypoints
    ("engine",),
    ("api", "compare"),  # the Python API; pfd.compare, `python -m pfd.compare`'s home (its work: engine.compare)
    ("query", "export", "serve"),  # query.py's work, the export and the search service, all on top of the API
    ("cli",),  # every command's parser and main (pip installs them as pfd-train ...; the scripts run them)
)
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


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


def layer_of(name: str) -> int:
    """The layer of an absolute `pfd...` module name; `pfd` itself (only `__version__` is imported from it) is 0."""
    parts = name.split(".")
    return 0 if len(parts) == 1 or parts[1] == "__version__" else LAYER[parts[1]]


def library_files() -> list[Path]:
    """Every module of the package except the commands (`__main__.py`) and `pfd/__init__.py` (lazy API exports)."""
    return sorted(f for f in PFD.rglob("*.py") if f.name != "__main__.py" and f != PFD / "__init__.py")


def test_every_module_has_a_layer():
    unknown = {f.relative_to(PFD).parts[0].removesuffix(".py") for f in library_files()} - set(LAYER)
    assert not unknown, f"add {sorted(unknown)} to LAYERS in {Path(__file__).name}"


@pytest.mark.parametrize("path", library_files(), ids=lambda f: str(f.relative_to(PFD)))
def test_modules_import_only_lower_layers(path):
    own = path.relative_to(PFD).parts[0].removesuffix(".py")
    offenders = sorted(name for name in imported_modules(path) if name.startswith("pfd.")
                       and name.split(".")[1] != own and layer_of(name) >= LAYER[own])
    assert not offenders, (f"pfd/{path.relative_to(PFD)} (layer {LAYER[own]}) imports {offenders}, "
                           "which are not in a lower layer")


@pytest.mark.parametrize("path", [PFD / "api.py", *sorted((PFD / "serve").glob("*.py"))],
                         ids=lambda f: str(f.relative_to(PFD)))
def test_the_api_and_the_service_run_without_the_engine(path):
    """The Python API and the service answer "what feature does this image get" with pfd.inference alone:
    nothing of the training engine (its drivers, logger, run folders) is imported, lazily or not."""
    assert not sorted(name for name in imported_modules(path) if name.startswith("pfd.engine")), path


def test_the_layer_rule_catches_a_pose_module_reading_the_data_package(tmp_path):
    fake = tmp_path / "pfd" / "pose" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..data.loader import build_train_loader\nfrom ..image import read_image\n")
    names = imported_modules(fake, tmp_path / "pfd")
    assert {layer_of(n) for n in names if n.startswith("pfd.")} == {LAYER["data"], LAYER["image"]}
    assert LAYER["data"] >= LAYER["pose"] > LAYER["image"]


IMPORTS_IN_A_FRESH_PROCESS = """
import sys
heavy = lambda: sorted({"torch", "faiss", "timm"} & set(sys.modules))
import pfd
print("pfd:", heavy())
import pfd.data.synthetic.__main__, pfd.pose.keypoints
print("synthetic:", heavy())
import pfd.model as m
print("model:", "pfd.model.losses" in sys.modules, end=" ")
m.build_loss
print("pfd.model.losses" in sys.modules)
from pfd.pose import load_or_build
print("pose:", "torch" in sys.modules)
m.nothing
"""


def test_imports_stay_light_and_exports_load_on_first_use():
    """One fresh process (torch alone takes ~2 s to import): `import pfd` loads no torch, faiss or timm;
    `python -m pfd.data.synthetic`'s modules and `pfd.pose.keypoints` load no torch; pfd.model and pfd.pose
    load their exports on first use; a missing one is named with its package."""
    out = subprocess.run([sys.executable, "-c", IMPORTS_IN_A_FRESH_PROCESS], cwd=PFD.parent, capture_output=True,
                         text=True)
    assert out.stdout.splitlines() == ["pfd: []", "synthetic: []", "model: False True", "pose: True"], out.stderr
    assert out.stderr.strip().endswith("AttributeError: module 'pfd.model' has no attribute 'nothing'")


def test_only_pfd_cli_reads_command_lines():
    """Every command's parsing lives in pfd/cli: no other module of the package imports argparse."""
    parsing = sorted(str(f.relative_to(PFD)) for f in PFD.rglob("*.py")
                     if f.parent != PFD / "cli" and "argparse" in imported_modules(f))
    assert parsing == [], "move their command-line parsing to pfd/cli"


@pytest.mark.parametrize("path", sorted(PFD.rglob("__main__.py")), ids=lambda f: str(f.relative_to(PFD)))
def test_a_python_m_home_only_runs_its_command_in_pfd_cli(path):
    """The one exemption from the layers is this narrow: `pfd/X/__main__.py` imports pfd.cli.NAME's main, nothing
    else (the command's parsing and work live in pfd.cli and the libraries)."""
    imported = imported_modules(path)
    module = min(imported)  # pfd.cli.NAME sorts before pfd.cli.NAME.main
    assert module.startswith("pfd.cli.") and imported == {module, f"{module}.main"}, imported


def module_name(path: Path, root: Path = PFD) -> str:
    """`pfd/pose/base.py` -> `pfd.pose.base`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_circles(root: Path = PFD) -> list[list[str]]:
    """Every group of modules under `root` that import each other in a circle (lazy imports included):
    the strongly connected components of the import graph with more than one module."""
    files = {module_name(f, root): f for f in root.rglob("*.py")}
    graph = {name: sorted(n for n in imported_modules(f, root) if n in files and n != name)
             for name, f in files.items()}
    reaches = {name: set(targets) for name, targets in graph.items()}
    for via in graph:  # transitive closure (Floyd-Warshall order): ~100 modules
        for name in graph:
            if via in reaches[name]:
                reaches[name] |= reaches[via]
    groups = {frozenset({name} | {n for n in reaches[name] if name in reaches[n]}) for name in graph}
    return sorted(sorted(group) for group in groups if len(group) > 1)


def test_no_module_is_in_an_import_circle():
    assert import_circles() == []


def test_the_circle_finder_sees_a_lazy_circle(tmp_path):
    pose = tmp_path / "pfd" / "pose"
    pose.mkdir(parents=True)
    (pose / "__init__.py").write_text("")
    (pose / "estimator.py").write_text("def build():\n    from .hrnet import HRNet\n")
    (pose / "hrnet.py").write_text("from .estimator import build\nfrom . import base\n")
    (pose / "base.py").write_text("import os\n")
    assert import_circles(tmp_path / "pfd") == [["pfd.pose.estimator", "pfd.pose.hrnet"]]
