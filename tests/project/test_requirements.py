"""The CPU and GPU installs stay one list: requirements.txt and requirements-gpu.txt name the same packages
at the same pins except FAISS (faiss-cpu there, faiss-gpu here, same version) and Milvus Lite (the pure-Python
Lite 3, which needs faiss-cpu, with its pyarrow, in the CPU install only; the GPU install pins the C++ Lite 2,
which needs no FAISS, because pymilvus requires some Lite), and `make install` reinstalls when any file
requirements.txt includes changes. pyproject.toml declares the same pins: its dependencies and extras, with `cpu`
or `gpu`, are the two installs."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
FAISS = {"faiss-cpu", "faiss-gpu"}
CPU_ONLY = {"faiss-cpu", "milvus-lite", "pyarrow"}  # pyarrow: Milvus Lite 3's, pinned below numpy 2's
GPU_ONLY = {"faiss-gpu", "milvus-lite"}


def read_requirements(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, str], list[Path]]:
    """({package name: requirement as written}, [the files read, includes after their includer]),
    following `-r FILE` includes relative to the including file."""
    assert path not in seen, f"{path.name} includes itself through {[p.name for p in seen]}"
    pins: dict[str, str] = {}
    files = [path]
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        include = re.fullmatch(r"(?:-r|--requirement)\s*(\S+)", line)
        if include:
            sub_pins, sub_files = read_requirements(path.parent / include.group(1), seen + (path,))
            files += sub_files
            entries = sub_pins.items()
        else:
            req = Requirement(line)
            entries = [(canonicalize_name(req.name), str(req))]
        for name, spec in entries:
            assert name not in pins, f"{path.name}:{number}: {name} is listed twice"
            pins[name] = spec
    return pins, files


def without(pins: dict[str, str], names: set[str]) -> dict[str, str]:
    return {name: spec for name, spec in pins.items() if name not in names}


def pinned_version(spec: str) -> Version:
    (clause,) = Requirement(spec).specifier
    assert clause.operator == "==", f"{spec}: expected an exact pin"
    return Version(clause.version)


def test_gpu_install_is_the_cpu_install_with_faiss_gpu():
    cpu, _ = read_requirements(REPO / "requirements.txt")
    gpu, _ = read_requirements(REPO / "requirements-gpu.txt")
    assert without(cpu, CPU_ONLY) == without(gpu, GPU_ONLY), "the CPU and GPU installs differ beyond FAISS and Lite"
    assert "faiss-cpu" in cpu and "faiss-gpu" not in cpu
    assert "faiss-gpu" in gpu and "faiss-cpu" not in gpu
    assert Requirement(cpu["faiss-cpu"]).specifier == Requirement(gpu["faiss-gpu"]).specifier
    assert {"onnx", "onnxruntime", "torch", "timm"} <= set(gpu)  # the export tests import these on a GPU too
    assert cpu["pymilvus"] == gpu["pymilvus"]  # both talk to a Milvus server


def test_milvus_lite_with_faiss_cpu_stays_off_the_gpu_install():
    """Milvus Lite 3 (pure Python) depends on faiss-cpu: the CPU install only. pymilvus 2.5 requires some Lite on
    Linux, so the GPU install pins a Lite 2 (C++, no FAISS dependency) and no pyarrow of Lite 3's."""
    cpu, _ = read_requirements(REPO / "requirements.txt")
    gpu, _ = read_requirements(REPO / "requirements-gpu.txt")
    assert pinned_version(cpu["milvus-lite"]).major >= 3 and "pyarrow" in cpu
    assert pinned_version(gpu["milvus-lite"]).major == 2 and "pyarrow" not in gpu
    assert pinned_version(cpu["pymilvus"]) < Version("2.6")  # 2.6 needs protobuf >= 5.27; mediapipe needs < 5


def test_make_install_tracks_every_included_file():
    _, files = read_requirements(REPO / "requirements.txt")
    reqs_line = re.search(r"^REQS\s*:=(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert reqs_line, "the Makefile has no REQS list (the files whose checksum names the install stamp)"
    assert set(reqs_line.group(1).split()) == {f.relative_to(REPO).as_posix() for f in files}


def test_reader_follows_includes_and_refuses_duplicates(tmp_path):
    (tmp_path / "common.txt").write_text("# shared\ntorch==2.14.1\nPillow>=10,<12  # images\n")
    (tmp_path / "cpu.txt").write_text("-r common.txt\nfaiss-cpu==1.15.1\n")
    pins, files = read_requirements(tmp_path / "cpu.txt")
    assert pins == {"torch": "torch==2.14.1", "pillow": "Pillow<12,>=10", "faiss-cpu": "faiss-cpu==1.15.1"}
    assert files == [tmp_path / "cpu.txt", tmp_path / "common.txt"]
    (tmp_path / "twice.txt").write_text("-r common.txt\ntorch==2.14.1\n")
    with pytest.raises(AssertionError, match="torch is listed twice"):
        read_requirements(tmp_path / "twice.txt")


def pyproject_project(pyproject: Path = REPO / "pyproject.toml") -> dict:
    """pyproject's [project] table (the test skips on Python 3.10, which has no TOML reader)."""
    return pytest.importorskip("tomllib").loads(pyproject.read_text())["project"]


def pyproject_pins(*extras: str, pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """{package name: requirement as written} of pyproject's dependencies plus the named extras; a package
    declared twice among them fails."""
    project = pyproject_project(pyproject)
    groups = [("dependencies", project["dependencies"])]
    groups += [(extra, project["optional-dependencies"][extra]) for extra in extras]
    pins: dict[str, str] = {}
    for group, specs in groups:
        for spec in specs:
            req = Requirement(spec)
            name = canonicalize_name(req.name)
            assert name not in pins, f"pyproject.toml: {name} is declared twice (again in {group})"
            pins[name] = str(req)
    return pins


SHARED_EXTRAS = ("serve", "export", "milvus", "dev")


def test_pyproject_declares_the_requirements_files_pins():
    """`pip install ".[cpu,serve,export,milvus,dev]"` asks for requirements.txt's pins, and with `gpu` instead of
    `cpu` for requirements-gpu.txt's: the same names, the same specifiers."""
    cpu, _ = read_requirements(REPO / "requirements.txt")
    gpu, _ = read_requirements(REPO / "requirements-gpu.txt")
    assert pyproject_pins("cpu", *SHARED_EXTRAS) == cpu
    assert pyproject_pins("gpu", *SHARED_EXTRAS) == gpu


def test_pyproject_leaves_the_faiss_build_to_an_extra():
    """faiss-cpu and faiss-gpu are both the `faiss` module: the plain dependencies name neither, `cpu` and `gpu`
    one each, and the extras every install shares name no FAISS or Milvus Lite."""
    extras = pyproject_project()["optional-dependencies"]
    assert set(extras) == {"cpu", "gpu", *SHARED_EXTRAS}
    assert not FAISS & set(pyproject_pins())
    assert FAISS & set(pyproject_pins("cpu")) == {"faiss-cpu"} and FAISS & set(pyproject_pins("gpu")) == {"faiss-gpu"}
    assert not (CPU_ONLY | GPU_ONLY) & set(pyproject_pins(*SHARED_EXTRAS))


def test_pyproject_check_sees_a_pin_that_moved(tmp_path):
    """The comparison is of specifiers, not only names: a pyproject whose torch pin differs fails it."""
    text = (REPO / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('"torch==2.14.1"', '"torch==2.14.0"', 1))
    cpu, _ = read_requirements(REPO / "requirements.txt")
    moved = pyproject_pins("cpu", *SHARED_EXTRAS, pyproject=tmp_path / "pyproject.toml")
    assert moved["torch"] == "torch==2.14.0" and moved != cpu
