"""The output rules, walked over every command that writes (issue 23): a user's file or folder at the
output path, a read-only folder and a full disk each end in one `error:` line on stderr and exit status
2, with nothing of the user's changed and nothing half-written left behind.

The refusals happen before any heavy work, so the commands run in this process; a few run as real
subprocesses too, for the exit status and for messages printed at interpreter exit. Read-only folders
and full disks are tmpfs mounts (root only: root ignores permission bits, so a chmod'ed folder would
prove nothing); where `mount` is refused the test is skipped, saying so.
"""
from __future__ import annotations

import errno
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pfd.cli import compare as compare_command
from pfd.cli import convert as convert_command
from pfd.cli import export as export_command
from pfd.cli import train_pose as train_pose_command
from pfd.data.occlude import __main__ as occlude_command
from pfd.data.synthetic import __main__ as synthetic_command
from pfd.data.synthetic import generate
from pfd.data.synthetic.generate import SyntheticConfig
from pfd.errors import user_errors
from pfd.io import OUTPUT_MARKER, claim_output_dir, output_kind
from pfd.pose import __main__ as pose_command
from pfd.retrieval import build_index, save_index

from engine_tiny import (
    DEMO_CONFIG,
    REPO,
    SMALL_SYNTHETIC,
    exit_status,
    load_script,
    run_python,
    tiny_opts,
)

DIR_COMMANDS = ("train", "test", "pose", "synthetic", "occlude", "compare", "index")  # their output is a folder
FILE_COMMANDS = ("export", "search", "convert", "train_pose")  # their output is one file
COMMANDS = DIR_COMMANDS + FILE_COMMANDS


def command(name: str, data_root: Path, out: Path) -> tuple:
    """(main, argv) of command `name` writing to `out`; nothing else it needs has to exist before its
    output is checked (no checkpoint, no index)."""
    opts = tiny_opts(data_root, data_root / "run")
    query = next((data_root / "synthetic" / "query").glob("*.jpg"))
    return {
        "train": (load_script("train").main, ["--config", str(DEMO_CONFIG), *opts, "OUTPUT_DIR", str(out)]),
        "test": (load_script("test").main, ["--config", str(DEMO_CONFIG), *opts, "OUTPUT_DIR", str(out),
                                            "TEST.WEIGHT", str(data_root / "absent.pth")]),
        "pose": (pose_command.main, ["--config", str(DEMO_CONFIG), *opts, "MODEL.POSE_CACHE_DIR", str(out)]),
        "synthetic": (synthetic_command.main, ["--out", str(out), *SMALL_SYNTHETIC]),
        "occlude": (occlude_command.main, ["--dataset", f"folder:{data_root / 'synthetic'}", "--out", str(out)]),
        "compare": (compare_command.main, ["--config", str(DEMO_CONFIG), "--out", str(out), *opts]),
        "export": (export_command.main, ["--weights", str(data_root / "absent.pth"), "--out", str(out)]),
        "index": (load_script("query").main, ["index", "--config", str(DEMO_CONFIG), "--weights",
                                              str(data_root / "absent.pth"), "--gallery",
                                              str(data_root / "synthetic" / "bounding_box_test"), "--out", str(out)]),
        "search": (load_script("query").main, ["search", "--index", str(data_root / "absent_index"),
                                               "--image", str(query), "--out", str(out)]),
        "convert": (convert_command.main, [str(data_root / "absent.pth"), str(out)]),
        "train_pose": (train_pose_command.main, ["--config", str(DEMO_CONFIG), "--out", str(out), *opts]),
    }[name]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (itself included) -> its bytes (None for a folder)."""
    paths = [root, *root.rglob("*")] if root.exists() else []
    return {str(p.relative_to(root.parent)): None if p.is_dir() else p.read_bytes() for p in paths}


def error_line(stderr: str) -> str:
    """The one `error:` line of a refused command; progress bars (carriage-return lines) aside, nothing else."""
    lines = [line for line in stderr.splitlines() if line.strip() and "\r" not in line and "it/s]" not in line
             and "img/s]" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def refused(name: str, data_root: Path, out: Path, capsys) -> str:
    main, argv = command(name, data_root, out)
    capsys.readouterr()
    status = exit_status(main, argv)
    err = capsys.readouterr().err
    assert status == 2, err
    return error_line(err)


def users_folder(place: Path) -> Path:
    """A user's folder whose names collide with ours (BAD 5: log.txt appended, training_curves.png replaced)."""
    folder = place / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "log.txt").write_text("my log\n")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "training_curves.png")
    (folder / "metrics.json").write_text('{"mine": 1}')
    (folder / "sub" / "notes.txt").write_text("my notes")
    return folder


@pytest.mark.parametrize("name", COMMANDS)
def test_a_users_file_at_the_output_path_is_refused_untouched(name, data_root, tmp_path, capsys):
    place = tmp_path / "place"
    place.mkdir()
    target = place / ("meta.json" if name in FILE_COMMANDS else "output")  # BAD 4: search --out INDEX/meta.json
    target.write_text('{"paths": ["mine"]}')
    before = snapshot(place)
    line = refused(name, data_root, target, capsys)
    assert str(target) in line
    assert snapshot(place) == before


@pytest.mark.parametrize("name", COMMANDS)
def test_a_users_folder_is_refused_untouched(name, data_root, tmp_path, capsys):
    place = tmp_path / "place"
    folder = users_folder(place)
    before = snapshot(place)
    line = refused(name, data_root, folder, capsys)
    assert str(folder) in line
    assert snapshot(place) == before  # no marker, no log.txt line, no picture replaced


@pytest.mark.parametrize("name", COMMANDS)
def test_a_read_only_folder_is_one_line(name, data_root, mount_tmpfs, capsys):
    read_only = mount_tmpfs("size=1m,ro")
    target = read_only / {"export": "out.onnx", "search": "out.png", "convert": "out.pth",
                          "train_pose": "out.pth"}.get(name, "out")
    line = refused(name, data_root, target, capsys)
    assert f"{read_only}: Read-only file system" in line
    assert list(read_only.iterdir()) == []


@pytest.mark.slow
def test_train_py_refuses_a_users_folder_as_a_process(data_root, tmp_path):
    """BAD 5 end to end: exit status 2 and one line from the real script; the user's files are as they were."""
    folder = users_folder(tmp_path)
    before = snapshot(tmp_path)
    done = run_python("train.py", "--config", str(DEMO_CONFIG), *tiny_opts(data_root, folder))
    assert done.returncode == 2 and "not empty and was not made by pfd" in error_line(done.stderr)
    assert snapshot(tmp_path) == before


def test_an_output_path_under_a_file_is_one_line(data_root, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    line = refused("train", data_root, tmp_path / "afile" / "run", capsys)
    assert line == f"error: {tmp_path / 'afile' / 'run'}: Not a directory"
    assert (tmp_path / "afile").read_text() == "mine"


def test_synthetic_force_refuses_a_users_file_anywhere_in_the_tree(tmp_path, capsys):
    """BAD 2: --force replaced a dataset folder and with it a file the user had put in query/."""
    out = tmp_path / "data"
    generate(out, SyntheticConfig(ids_train=4, ids_test=2, images_per_id=4, distractors=1, junk=1), progress=False)
    (out / "query" / "my_photo.jpg").write_bytes(b"mine")
    (out / "query" / "notes").mkdir()
    (out / "query" / "notes" / "todo.txt").write_text("mine")
    before = snapshot(out)
    capsys.readouterr()
    assert exit_status(synthetic_command.main, ["--out", str(out), "--force", *SMALL_SYNTHETIC]) == 2
    line = error_line(capsys.readouterr().err)
    assert "query/my_photo.jpg" in line and "query/notes/todo.txt" in line
    assert snapshot(out) == before
    for extra in ("query/my_photo.jpg", "query/notes/todo.txt"):
        (out / extra).unlink()
    (out / "query" / "notes").rmdir()
    assert exit_status(synthetic_command.main, ["--out", str(out), "--force", *SMALL_SYNTHETIC]) == 0  # its own


def test_force_refuses_a_file_of_the_dataset_a_user_changed(tmp_path, capsys):
    """BAD 2 by content: a generated image the user overwrote with their own and an edited keypoints.json
    keep their names, so only the bytes recorded when they were written tell them apart (synthetic
    generator and pfd.data.occlude alike)."""
    out = tmp_path / "data"
    generate(out, SyntheticConfig(ids_train=4, ids_test=2, images_per_id=4, distractors=1, junk=1), progress=False)
    occluded = tmp_path / "occ"
    assert exit_status(occlude_command.main, ["--dataset", f"folder:{out}", "--out", str(occluded)]) == 0
    photo = next((out / "query").glob("*.jpg"))
    Image.new("RGB", (64, 128), (1, 2, 3)).save(photo)  # the user's own picture under the generator's name
    (out / "keypoints.json").write_text((out / "keypoints.json").read_text().replace("0.", "0.0", 1))
    (occluded / "occlusion.json").write_text("{}")
    for main, folder, argv in ((synthetic_command.main, out, SMALL_SYNTHETIC), (occlude_command.main, occluded,
                                                                                ["--dataset", f"folder:{out}"])):
        before = snapshot(folder)
        capsys.readouterr()
        assert exit_status(main, ["--out", str(folder), "--force", *argv]) == 2
        line = error_line(capsys.readouterr().err)
        assert "changed since" in line and snapshot(folder) == before
        changed = [f"query/{photo.name}", "keypoints.json"] if folder == out else ["occlusion.json"]
        assert all(name in line for name in changed), line


def test_synthetic_force_still_replaces_a_folder_of_an_earlier_version(tmp_path):
    """Folders made before the generic marker carry `.pfd-synthetic`: still the generator's own."""
    out = tmp_path / "data"
    generate(out, SyntheticConfig(ids_train=4, ids_test=2, images_per_id=4, distractors=1, junk=1), progress=False)
    (out / OUTPUT_MARKER).rename(out / ".pfd-synthetic")
    assert exit_status(synthetic_command.main, ["--out", str(out), "--force", *SMALL_SYNTHETIC]) == 0
    assert output_kind(out) == "synthetic" and not (out / ".pfd-synthetic").exists()


def test_search_never_writes_into_an_index_folder(data_root, tmp_path, capsys):
    """BAD 4: `search --out INDEX/meta.json` replaced the index's metadata with a picture. A saved index
    keeps its files one level down (INDEX/v0001/meta.json), so every depth inside it is refused."""
    records = [SimpleNamespace(path=f"/g/{i}.jpg", pid=i, camid=0) for i in range(4)]
    index = save_index(build_index(np.eye(4, 8, dtype=np.float32), records, model_id="m", config_hash="c"),
                       tmp_path / "index")
    before = snapshot(index)
    for out in (index / "v0001" / "meta.json", index / "v0001" / "new.png", index / "new.png",
                index / "sub" / "new.png"):
        line = refused("search", data_root, out, capsys)
        assert "inside a pfd index folder" in line and snapshot(index) == before, out


def test_compare_checks_names_and_every_variant_folder_before_training(data_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    main, argv = command("compare", data_root, out)
    capsys.readouterr()
    assert exit_status(main, [*argv, "--variant", "../../escaped", "MODEL.PFA", "false"]) == 2
    assert "expected a plain name" in error_line(capsys.readouterr().err) and not out.exists()
    (out / "vit_baseline").mkdir(parents=True)  # the second variant's folder is taken
    (out / "vit_baseline" / "notes.txt").write_text("mine")
    assert exit_status(main, argv) == 2
    assert "vit_baseline is not empty" in error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == ["vit_baseline"]  # pfd, the first, did not train


def test_os_errors_on_a_users_path_are_one_line_and_others_stay_tracebacks(capsys):
    with pytest.raises(SystemExit) as exit_info, user_errors():
        raise PermissionError(errno.EACCES, "Permission denied", "/data/out")
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: /data/out: Permission denied\n"
    with pytest.raises(OSError), user_errors():  # no file named: the program's own failure
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(FileNotFoundError), user_errors():  # a missing input is MissingFileError's job
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/in")
    with pytest.raises(PermissionError), user_errors(debug=True):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/out")


def test_replace_refuses_a_users_file_in_a_run_folder_and_deletes_nothing(data_root, tmp_path):
    """BAD 1: the demo's `rm -rf DEMO_DIR/run` deleted a user's notes with the run; --replace does not."""
    from pfd.engine.trainer import Trainer
    from pfd.errors import InvalidInputError, OutputExistsError

    from engine_tiny import tiny_config

    run = claim_output_dir(tmp_path / "run", "run")
    (run / "last.pth").write_bytes(b"an earlier run")
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    with pytest.raises(OutputExistsError, match=r"--replace: .*notes\.txt.*nothing was replaced"):
        Trainer(tiny_config(data_root, run), replace=True)
    assert snapshot(run) == before  # not even a lock file
    with pytest.raises(InvalidInputError, match="--replace .* --resume"):
        Trainer(tiny_config(data_root, run, "MODEL.RESUME", "auto"), replace=True)


def test_replace_starts_over_in_a_run_folder_of_ours(data_root, tmp_path):
    """What `make demo` does on a rerun: the earlier run's files go, under the lock, before the new log starts."""
    from pfd.engine.rundir import LOCK_FILE
    from pfd.engine.trainer import Trainer

    from engine_tiny import tiny_config

    run = claim_output_dir(tmp_path / "run", "run")
    for name in ("last.pth", "epoch_013.pth", "metrics.jsonl", "log.txt", "training_curves.png"):
        (run / name).write_bytes(b"earlier")
    trainer = Trainer(tiny_config(data_root, run), replace=True)
    try:
        assert sorted(p.name for p in run.iterdir()) == sorted([OUTPUT_MARKER, LOCK_FILE, "log.txt"])
        assert b"earlier" not in (run / "log.txt").read_bytes()
    finally:
        trainer.close()


def test_replace_run_deletes_only_what_a_run_wrote(tmp_path):
    from pfd.engine.rundir import LOCK_FILE, replace_run

    run = claim_output_dir(tmp_path / "run", "run")
    for name in ("last.pth", "epoch_010.pth", "metrics.jsonl", "log.txt", "training_curves.png", LOCK_FILE,
                 "metrics.json", "cmc.png", "market/ranked_lists.png", ".last.pth.tmp-host-1-x.tmp"):
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_bytes(b"ours")
    claim_output_dir(run / "test", "eval")
    (run / "test" / "metrics.json").write_text("{}")
    assert "market/ranked_lists.png" in replace_run(run)
    assert sorted(p.name for p in run.iterdir()) == sorted([OUTPUT_MARKER, LOCK_FILE])


def test_the_demo_deletes_nothing_on_a_rerun_and_evaluates_into_its_own_folder():
    """BAD 1, `make demo` (dry run): no `rm`, no --replace (it deleted a finished run): train.py --resume
    (a finished run is kept, another config's refused), the index appended to, test.py into DEMO_DIR/eval."""
    done = subprocess.run(["make", "-n", "demo", "DEMO_DIR=/demo", "VENV=/nowhere"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 and "not found" in done.stderr:
        pytest.skip(f"make is not installed: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.replace("\\\n", " ").splitlines()  # one line per command
    assert not [line for line in lines if "rm " in line or "--replace" in line]
    assert any("train.py --resume" in line and "OUTPUT_DIR /demo/run" in line for line in lines)
    assert any("query.py index" in line and "test -f /demo/index/manifest.json && echo --append" in line
               for line in lines)
    assert any("test.py" in line and "OUTPUT_DIR /demo/eval" in line for line in lines)


def test_test_py_evaluates_into_its_own_or_a_run_folder(tmp_path):
    from pfd.engine.rundir import claim_eval_dir
    from pfd.errors import OutputExistsError

    run = claim_output_dir(tmp_path / "run", "run")
    assert claim_eval_dir(run) == run and output_kind(run) == "run"  # beside the run it evaluates
    older_run = tmp_path / "older_run"  # a run of a version without markers
    older_run.mkdir()
    (older_run / "last.pth").write_bytes(b"x")
    assert claim_eval_dir(older_run) == older_run and output_kind(older_run) == "run"
    older_eval = tmp_path / "older_eval"
    older_eval.mkdir()
    (older_eval / "metrics.json").write_text('{"dataset": "x", "provenance": {}}')
    (older_eval / "cmc.png").write_bytes(b"x")
    assert claim_eval_dir(older_eval) == older_eval and output_kind(older_eval) == "eval"
    with pytest.raises(OutputExistsError, match="pfd pose_cache folder, not a eval folder"):
        claim_eval_dir(claim_output_dir(tmp_path / "cache", "pose_cache"))


def test_a_cache_folder_of_an_earlier_version_is_adopted(tmp_path):
    from pfd.errors import OutputExistsError
    from pfd.pose.cache import claim_cache_dir

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "market_synthetic.npz").write_bytes(b"x")
    assert claim_cache_dir(tmp_path / "old") == tmp_path / "old" and output_kind(tmp_path / "old") == "pose_cache"
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "market_synthetic.npz").write_bytes(b"x")
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="MODEL.POSE_CACHE_DIR"):
        claim_cache_dir(tmp_path / "mixed")


def test_every_picture_pfd_writes_is_marked_as_its_own(tmp_path):
    import numpy as np

    from pfd.image import is_pfd_png
    from pfd.retrieval import plots

    cmc = plots.plot_cmc(np.linspace(0.5, 1.0, 10), tmp_path / "cmc.png")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"kind": "train", "epoch": 1, "total": 1.0}\n')
    curves = plots.plot_training_curves(metrics, tmp_path / "curves.png")
    image = tmp_path / "0001_c1s1_000001_00.jpg"
    Image.new("RGB", (64, 128)).save(image)
    ranked = plots.plot_ranked_lists([str(image)], [1], [str(image)], [1], [[0]], tmp_path / "ranked.png", topk=1)
    assert all(is_pfd_png(p) for p in (cmc, curves, ranked))
    Image.new("RGB", (8, 8)).save(tmp_path / "users.png")
    (tmp_path / "text.png").write_text("not a picture")
    assert not is_pfd_png(tmp_path / "users.png") and not is_pfd_png(tmp_path / "text.png")
