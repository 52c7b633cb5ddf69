"""Names and links that lead outside (issue 31), tested as rules: every place a name a user gave becomes a
path keeps it inside its folder (pfd.io.child_path / flat_name); no removal follows a symbolic link out
of the folder it cleans (pfd.io.remove_inside), with links planted in each folder a command cleans; both
dataset writers share one `--force` rule by recorded content (pfd.data.writer); an output folder inside
one of our folders of another purpose is refused like a single file there (pfd.io.NESTS)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pfd.cli import compare as compare_command
from pfd.data.occlude import __main__ as occlude_command
from pfd.data.synthetic import __main__ as synthetic_command
from pfd.data.synthetic import generate
from pfd.data.synthetic.generate import SyntheticConfig
from pfd.data.writer import claim_dataset_dir
from pfd.engine.compare import compare_page
from pfd.engine.rundir import LOCK_FILE, RunLock, claim_eval_dir, claim_run_dir, replace_run
from pfd.engine.tester import set_output_dir
from pfd.engine.trainer import Trainer
from pfd.errors import InvalidInputError, OutputExistsError, UserError
from pfd.io import OUTPUT_MARKER, atomic_write, claim_output_dir, flat_name, remove_inside
from pfd.pose.cache import cache_path
from pfd.retrieval import IndexLoadError, build_index, load_index, save_index
from pfd.retrieval.index_folder import MANIFEST_FILE

from engine_tiny import DEMO_CONFIG, SMALL_SYNTHETIC, exit_status, load_script, make_data, tiny_config, tiny_opts

BAD_NAMES = ["..", "../../escaped", "/etc/passwd", "a/b", "folder:../../../x/ds3", "folder:/abs/path/ds3",
             "we ird <b>&'\"", "ümlaut", "x" * 300, ".", ""]


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every path under `root` -> its bytes (None for a folder, the target for a link), links not entered."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            out[key] = (f"-> {os.readlink(path)}" if path.is_symlink() else None if path.is_dir()
                        else path.read_bytes())
    return out


def users_folder(place: Path) -> Path:
    """A folder of a user's, with the names our writers use."""
    folder = place / "users"
    (folder / "sub").mkdir(parents=True)
    for name in ("index.faiss", "meta.json", "report.html", "metrics.json", "notes.txt", "sub/thesis.tex"):
        (folder / name).write_text(f"the user's {name}")
    return folder


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ names a user gives stay inside their folder
@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_test_set_s_folder_is_a_flat_name_inside_output_dir(name, tmp_path):
    """Issue 31 item 2: test.py (and pfd.compare, through it) wrote OUTPUT_DIR / <set name> unchecked, so
    `folder:../../../x/ds3` escaped OUTPUT_DIR and an absolute folder was mirrored deep inside it."""
    folder = set_output_dir(tmp_path, name, num_sets=2)
    assert folder.parent == tmp_path and folder.name not in (".", "..") and "/" not in folder.name
    assert folder.name == flat_name(name) and len(folder.name) < 60
    assert set_output_dir(tmp_path, name, num_sets=1) == tmp_path
    assert flat_name(f"{name}.") != flat_name(name)  # two sets never share a folder


def test_flat_names_keep_plain_names_and_the_last_part_of_others():
    assert flat_name("cuhk03_occ") == "cuhk03_occ"
    ds3 = flat_name("folder:../../../x/ds3")
    assert ds3.startswith("ds3-") and len(ds3) == len("ds3-") + 8
    assert flat_name("folder:/abs/path/ds3/").startswith("ds3-") and flat_name("folder:/abs/path/ds3") != ds3


def test_a_link_where_a_test_set_s_folder_belongs_is_refused(tmp_path):
    users = users_folder(tmp_path)
    out = claim_output_dir(tmp_path / "eval", "eval")
    (out / flat_name("folder:../x/ds3")).symlink_to(users, target_is_directory=True)
    before = snapshot(users)
    with pytest.raises(OutputExistsError, match="symbolic link"):
        set_output_dir(out, "folder:../x/ds3", 2)
    assert snapshot(users) == before


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_variant_name_is_a_plain_name_or_refused(name, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["--config", str(DEMO_CONFIG), "--out", str(out), "--variant", name, "MODEL.PFA", "false"]
    assert exit_status(compare_command.main, argv) == 2
    assert "expected a plain name" in capsys.readouterr().err and not out.exists()


def test_a_link_where_a_variant_s_run_belongs_is_refused_before_training(tmp_path):
    from pfd.engine.compare import run_compare

    users = users_folder(tmp_path)
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "pfd").symlink_to(users, target_is_directory=True)
    before = snapshot(users)
    with pytest.raises(OutputExistsError, match=r"cmp/pfd .*symbolic link"):
        run_compare(str(DEMO_CONFIG), [], out, {"pfd": ["MODEL.NAME", "pfd"]})
    assert snapshot(users) == before


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_dataset_s_pose_cache_is_a_flat_name_in_the_cache_folder(name, tmp_path):
    cfg = SimpleNamespace(MODEL=SimpleNamespace(POSE_CACHE_DIR=str(tmp_path)), OUTPUT_DIR=str(tmp_path))
    path = cache_path(cfg, name, "mediapipe")
    assert path.parent == tmp_path and path.name.endswith("_mediapipe.npz") and not path.name.startswith(".")


@pytest.mark.parametrize("version", ["../other/v0001", "/abs/v0001", "v0001/../../x", "v1", "x"])
def test_an_index_version_is_a_plain_name_or_the_manifest_is_refused(version, tmp_path):
    index = save_index(_small_index(), tmp_path / "index")
    manifest = json.loads((index / MANIFEST_FILE).read_text())
    (index / MANIFEST_FILE).write_text(json.dumps(dict(manifest, version=version)))
    with pytest.raises(IndexLoadError, match="not a readable pfd-index-v2 manifest"):
        load_index(index)


def test_the_comparison_page_links_each_set_s_flat_folder():
    record = {"mAP": 0.5, "rank1": 0.6, "num_query": 3, "buckets": None}
    sets = ["synthetic", "folder:../../../x/ds3", "folder:/abs/<b>ds3"]
    page = compare_page({s: {"pfd": record} for s in sets}, Path("/nowhere"))
    links = re.findall(r'href="([^"]*)"', page)
    assert links == [f"pfd/test/{flat_name(name)}/report.html" for name in sets]


# ------------------------------------------------------------------ removals never follow a link
def test_remove_inside_never_follows_a_link(tmp_path):
    users = users_folder(tmp_path)
    before = snapshot(users)
    root = tmp_path / "ours"
    (root / "tree" / "deep").mkdir(parents=True)
    (root / "tree" / "deep" / "a.txt").write_text("ours")
    (root / "tree" / "to_folder").symlink_to(users, target_is_directory=True)
    (root / "tree" / "to_file").symlink_to(users / "notes.txt")
    (root / "via").symlink_to(users, target_is_directory=True)
    with pytest.raises(OutputExistsError, match=r"ours/via is a symbolic link"):
        remove_inside(root, root / "via" / "notes.txt")  # a link on the way: nothing removed through it
    assert remove_inside(root, root / "via")  # the link itself goes
    assert remove_inside(root, root / "tree", tree=True)  # links inside are unlinked, never entered
    assert list(root.iterdir()) == [] and snapshot(users) == before
    assert not remove_inside(root, root / "gone")
    with pytest.raises(ValueError):
        remove_inside(root, tmp_path / "users")


def test_replace_refuses_a_run_folder_holding_links(tmp_path):
    """train.py --replace cleans a run folder: a planted link (to a file or a folder of the user's) is refused."""
    users = users_folder(tmp_path)
    before = snapshot(users)
    for link, target in (("last.pth", users / "notes.txt"), ("market", users), ("market2/report.html", users)):
        run = claim_output_dir(tmp_path / f"run_{len(link)}", "run")
        (run / "metrics.jsonl").write_text("{}\n")
        (run / link).parent.mkdir(exist_ok=True)
        (run / link).symlink_to(target)
        with pytest.raises(OutputExistsError, match=link):
            replace_run(run)
        assert (run / link).is_symlink() and snapshot(users) == before


def test_a_link_as_the_run_lock_is_refused(tmp_path):
    users = users_folder(tmp_path)
    run = claim_output_dir(tmp_path / "run", "run")
    (run / LOCK_FILE).symlink_to(users / "notes.txt")
    with pytest.raises(UserError, match="symbolic link"):
        RunLock.acquire(run / LOCK_FILE)
    assert (users / "notes.txt").read_text() == "the user's notes.txt"


def test_a_killed_writer_s_temp_file_that_is_a_link_goes_alone(tmp_path):
    users = users_folder(tmp_path)
    target = tmp_path / "ours" / "cmc.png"
    target.parent.mkdir()
    (target.parent / f".cmc.png.tmp-{socket.gethostname()}-{dead_pid()}-x.tmp").symlink_to(users / "notes.txt")
    atomic_write(target, lambda f: f.write(b"new"))
    assert sorted(p.name for p in target.parent.iterdir()) == ["cmc.png"]
    assert (users / "notes.txt").read_text() == "the user's notes.txt"


def _small_index(rows: int = 4, offset: int = 0):
    records = [SimpleNamespace(path=f"/g/{offset + i}.jpg", pid=i, camid=0) for i in range(rows)]
    return build_index(np.eye(rows, 8, k=offset % 4, dtype=np.float32), records, model_id="m", config_hash="c")


def _grown(index: Path):
    """The index at `index` loaded and grown by one image (what `query.py index --append` saves)."""
    loaded = load_index(index, use_gpu=False)
    loaded.add(np.ones((1, 8), np.float32), [SimpleNamespace(path="/g/new.jpg", pid=9, camid=1)], [None])
    return loaded


@pytest.mark.parametrize("plant", ["old version", "next version", "dangling next version", "current file",
                                   "manifest"])
def test_an_index_folder_holding_links_is_refused_before_any_write(plant, tmp_path):
    """Issue 31 items 4 and 5: `--append` removed an old version through a link (another index's
    index.faiss and meta.json), or wrote and removed in a user's folder linked as the next version."""
    users = users_folder(tmp_path)
    other = save_index(_small_index(offset=1), tmp_path / "other")
    index = save_index(_small_index(), tmp_path / "index")  # v0001
    index = save_index(_grown(index), index)  # v0002; v0001 removed
    grown = _grown(index)  # loaded before the links appear, as `--append` loads first
    link, target = {"old version": ("v0001", other / "v0001"), "next version": ("v0003", users),
                    "dangling next version": ("v0003", tmp_path / "nothing"),
                    "current file": ("v0002/meta.json", users / "meta.json"),
                    "manifest": (MANIFEST_FILE, other / MANIFEST_FILE)}[plant]
    if (index / link).exists():
        (index / link).rename(tmp_path / "moved")  # ours, moved away: the link stands in its place
    (index / link).symlink_to(target)
    before = {folder.name: snapshot(folder) for folder in (users, other, index)}
    with pytest.raises(OutputExistsError, match=rf"symbolic links where the index's own files belong \({link}\)"):
        save_index(grown, index)
    assert {folder.name: snapshot(folder) for folder in (users, other, index)} == before
    assert len(load_index(other, use_gpu=False)) == 4


# ------------------------------------------------------------------ one --force rule for both dataset writers
def _synthetic(out: Path, *extra: str) -> int:
    return exit_status(synthetic_command.main, ["--out", str(out), *SMALL_SYNTHETIC, *extra])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("writers") / "synthetic"
    generate(out, SyntheticConfig(ids_train=4, ids_test=2, images_per_id=4, distractors=1, junk=1), progress=False)
    return out


def _writer(writer: str, generated: Path, tmp_path: Path):
    """(the writer's output folder, written once; the command that writes it again, given extra options)."""
    out = tmp_path / writer

    def run(*extra: str) -> int:
        if writer == "synthetic":
            return _synthetic(out, *extra)
        return exit_status(occlude_command.main, ["--dataset", f"folder:{generated}", "--out", str(out), *extra])

    assert run() == 0
    return out, run


@pytest.mark.parametrize("writer", ["occlude", "synthetic"])
@pytest.mark.parametrize("change", ["a user's photo in query/", "a user's photo in the gallery", "a changed image",
                                    "a link to a user's file", "a link to a user's folder"])
def test_force_replaces_only_what_the_writer_wrote_by_recorded_content(writer, change, generated, tmp_path, capsys):
    """Issue 31 item 3: `pfd.data.occlude --force` deleted a user's photo copied into query/ or
    bounding_box_test/ (every *.jpg there was taken as its own); both writers now share the synthetic
    generator's rule: a file is the writer's when its SHA-256 is the one recorded when it was written."""
    users = users_folder(tmp_path)
    out, run = _writer(writer, generated, tmp_path)
    photo = next((out / "query").glob("*.jpg"))
    entry = {"a user's photo in query/": "query/my_photo.jpg",
             "a user's photo in the gallery": "bounding_box_test/0001_c1s1_999999_00.jpg",
             "a changed image": f"query/{photo.name}", "a link to a user's file": "query/0001_c2s1_999999_00.jpg",
             "a link to a user's folder": "query/more"}[change]
    if change.startswith("a link"):
        (out / entry).symlink_to(users / "notes.txt" if "file" in change else users)
    else:
        Image.new("RGB", (64, 128), (1, 2, 3)).save(out / entry)  # the user's own picture
    before, users_before = snapshot(out), snapshot(users)
    capsys.readouterr()
    assert run("--force") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and entry in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before and snapshot(users) == users_before
    (out / entry).unlink()
    if change == "a changed image":
        return  # its generated bytes are gone: the folder stays refused, as it should
    assert run("--force") == 0  # only the writer's own files: replaced


# ------------------------------------------------------------------ the occluded-set builder's output folder
def test_occlude_removes_the_temp_folders_of_killed_runs(generated, tmp_path):
    out = tmp_path / "occ"
    host, gone = socket.gethostname(), dead_pid()
    stale = [tmp_path / f"occ.tmp-{host}-{gone}-abc_1234", tmp_path / f"occ.old-{host}-{gone}"]
    alive = [tmp_path / f"occ.tmp-{host}-{os.getpid()}-abc_1234", tmp_path / f"occ.tmp-otherhost-{gone}-abc_1234"]
    for folder in stale + alive:
        claim_output_dir(folder, "occluded")
        (folder / "query").mkdir()
        (folder / "query" / "0001_c1s1_000001_00.jpg").write_bytes(b"half written")
    users = users_folder(tmp_path)
    (tmp_path / f"occ.tmp-{host}-{gone}-link_123").symlink_to(users, target_is_directory=True)
    before = snapshot(users)
    assert exit_status(occlude_command.main, ["--dataset", f"folder:{generated}", "--out", str(out)]) == 0
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not any(folder.name in left for folder in stale) and all(folder.name in left for folder in alive)
    assert f"occ.tmp-{host}-{gone}-link_123" in left and snapshot(users) == before


def test_occlude_refuses_an_out_inside_its_source_dataset(generated, capsys):
    before = snapshot(generated)
    for out in (generated / "occluded", generated / "query" / "occ", generated):
        capsys.readouterr()
        argv = ["--dataset", f"folder:{generated}", "--out", str(out), "--force"]
        assert exit_status(occlude_command.main, argv) == 2
        assert "lies inside the source dataset" in capsys.readouterr().err
    assert snapshot(generated) == before


@pytest.mark.parametrize("writer", ["occlude", "synthetic"])
def test_force_through_a_symlinked_out_writes_where_it_points(writer, generated, tmp_path):
    out, _ = _writer(writer, generated, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    argv = (["--dataset", f"folder:{generated}", "--out", str(link), "--force", "--seed", "4"] if writer == "occlude"
            else ["--out", str(link), *SMALL_SYNTHETIC, "--force", "--seed", "4"])
    main = occlude_command.main if writer == "occlude" else synthetic_command.main
    assert exit_status(main, argv) == 0
    assert link.is_symlink() and link.resolve() == out.resolve() and (out / OUTPUT_MARKER).is_file()
    config = json.loads((out / ("occlusion.json" if writer == "occlude" else "meta.json")).read_text())["config"]
    assert config["seed"] == 4
    assert not [p.name for p in tmp_path.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


# ------------------------------------------------------------------ one rule for output folders and files
def test_no_output_folder_lies_inside_one_of_ours_of_another_purpose(tmp_path):
    """Issue 31: a run could be trained inside an index folder while a single file there was refused."""
    index = save_index(_small_index(), tmp_path / "index")
    for claim in (claim_run_dir, claim_eval_dir):
        with pytest.raises(OutputExistsError, match="inside a pfd index folder"):
            claim(index / "run")
    assert not (index / "run").exists()
    with pytest.raises(OutputExistsError, match="inside a pfd run folder"):
        claim_output_dir(claim_output_dir(tmp_path / "run", "run") / "idx", "index")
    with pytest.raises(InvalidInputError, match="inside the source dataset"):
        claim_dataset_dir(tmp_path / "src" / "occ", "occluded", "pfd.data.occlude", False, legacy_marker=".x",
                          source=tmp_path / "src")
    # what nests: an evaluation in its run and per test set, a compare's runs and their evaluations
    compare = claim_output_dir(tmp_path / "cmp", "compare")
    run = claim_run_dir(compare / "pfd")
    assert claim_eval_dir(claim_eval_dir(run / "test") / "synthetic") == run / "test" / "synthetic"
    assert claim_output_dir(run / "pose_cache", "pose_cache") == run / "pose_cache"


def test_replace_deletes_test_py_s_report_files_in_a_run_folder(tmp_path):
    """Issue 31: `train.py --replace` refused test.py's own report.html and ranked_*.png in a run folder."""
    run = claim_output_dir(tmp_path / "run", "run")
    files = ["last.pth", "metrics.jsonl", "training_curves.png", "metrics.json", "cmc.png", "report.html",
             "ranked_lists.png", "ranked_0-5_best.png", "ranked_12-17_worst.png", "synthetic/report.html",
             "synthetic/ranked_6-11_best.png", "synthetic/training_curves.png", "ds3-1f2e3d4c/metrics.json"]
    claim_output_dir(run / "synthetic", "eval")  # test.py's folder of one of several test sets
    for name in files:
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_bytes(b"ours")
    assert replace_run(run) == sorted([*files, f"synthetic/{OUTPUT_MARKER}"])
    assert [p.name for p in run.iterdir()] == [OUTPUT_MARKER]


@pytest.mark.slow
def test_test_py_writes_every_set_in_its_own_flat_folder_inside_output_dir(tmp_path):
    """Issue 31 item 2 end to end: `DATASETS.TEST_NAMES synthetic,folder:../../../x/ds3` wrote the second set's
    metrics.json and report.html over a user's in OUTPUT_DIR/../x/ds3 (OUTPUT_DIR / "folder:.." / ".." / ...);
    an absolute folder: path was mirrored deep inside OUTPUT_DIR. Each set now has one flat folder in
    OUTPUT_DIR, named after it."""
    root = make_data(tmp_path / "a" / "b" / "data")  # ROOT_DIR/../../../x/ds3 is tmp_path/x/ds3
    Trainer(tiny_config(root, tmp_path / "run", "TEST.EVAL", "false")).save(0, improved=False)
    ds3 = tmp_path / "x" / "ds3"
    shutil.copytree(root / "synthetic", ds3)
    users = users_folder(tmp_path / "a" / "x").rename(tmp_path / "a" / "x" / "ds3")  # where main wrote the set
    before = snapshot(users)
    sets = ["synthetic", "folder:../../../x/ds3", f"folder:{ds3}"]
    out = tmp_path / "a" / "eval"
    load_script("test").main(["--config", str(DEMO_CONFIG), *tiny_opts(root, out), "DATASETS.TEST_NAMES",
                              ",".join(sets), "TEST.WEIGHT", str(tmp_path / "run" / "last.pth")])
    assert snapshot(users) == before
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(flat_name(name) for name in sets)
    for name in sets:
        assert json.loads((out / flat_name(name) / "metrics.json").read_text())["dataset"] == name
        assert (out / flat_name(name) / "report.html").is_file()
