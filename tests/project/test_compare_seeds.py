"""bench/compare_seeds.py, which makes the README's real-data table (issue 31): every test set (`folder:`
ones too, named by their records), a note when folders disagree, one `error:` line for a missing run."""
import json
from pathlib import Path

import pytest

from bench.compare_seeds import main
from pfd.io import flat_name

from engine_tiny import exit_status

SETS = ("cuhk03", "folder:/data/cuhk03_occ")


def record(name: str, mAP: float, buckets: tuple = ((0, 4), (6, 6))) -> dict:
    rows = [{"visible": f"{low}-{low + 5}", "num_query": n, "mAP": mAP, "rank1": mAP + 0.1} for low, n in buckets]
    return {"dataset": name, "mAP": mAP, "rank1": mAP + 0.1, "num_query": 10, "buckets": {"rows": rows}}


def compare_folder(root: Path, seed: int, sets=SETS, buckets=((0, 4), (6, 6))) -> Path:
    """A `pfd.compare --out` folder as test.py writes it: OUT/VARIANT/test/<set folder>/metrics.json."""
    out = root / f"seed{seed}"
    for variant, base in (("pfd", 0.5), ("vit_baseline", 0.4)):
        for name in sets:
            folder = out / variant / "test" / (flat_name(name) if len(sets) > 1 else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps(record(name, base + seed / 100, buckets)))
    return out


def test_every_test_set_gets_a_table(tmp_path, capsys):
    outs = [str(compare_folder(tmp_path, seed)) for seed in range(3)]
    assert exit_status(main, outs) == 0
    out = capsys.readouterr().out
    assert "**cuhk03** (3 seeds" in out and "**folder:/data/cuhk03_occ** (3 seeds" in out
    assert "| pfd | 51.0 ± 1.0 | 61.0 ± 1.0 |" in out and "| pfd - vit_baseline | +10.0 ± 0.0 |" in out
    assert "| variant | all (10) mAP | R-1 | 0-5 vis (4) mAP | R-1 | 6-11 vis (6) mAP | R-1 |" in out
    single = [str(compare_folder(tmp_path / "one", seed, sets=("cuhk03",))) for seed in range(2)]
    assert exit_status(main, single) == 0 and "**cuhk03** (2 seeds" in capsys.readouterr().out


def test_folders_that_disagree_get_a_note_not_a_traceback(tmp_path, capsys):
    outs = [compare_folder(tmp_path, 0), compare_folder(tmp_path, 1), compare_folder(tmp_path, 2, sets=SETS[:1]),
            compare_folder(tmp_path / "other", 3, buckets=((0, 10),))]
    assert exit_status(main, [str(o) for o in outs]) == 0
    out = capsys.readouterr().out
    assert f"note: folder:/data/cuhk03_occ is missing from {outs[2]}" in out
    assert "**folder:/data/cuhk03_occ** (2 seeds" in out and "**cuhk03** (3 seeds" in out
    assert f"note: cuhk03 is bucketed or sized otherwise in {outs[3]}" in out


@pytest.mark.parametrize("case", ["no folder", "no variant", "no metrics", "bad pair"])
def test_a_missing_run_is_one_line(case, tmp_path, capsys):
    out = compare_folder(tmp_path, 0)
    argv, words = {"no folder": ([str(tmp_path / "nowhere")], "compare folder not found"),
                   "no variant": ([str(out), "--variants", "pfd", "pfd_occ"], "variant pfd_occ's evaluation folder"),
                   "no metrics": ([str(out)], "holds no metrics.json"),
                   "bad pair": ([str(out), "--pairs", "pfd-vit"], "--pairs pfd-vit: expected A:B")}[case]
    if case == "no metrics":
        for metrics in (out / "vit_baseline").rglob("metrics.json"):
            metrics.unlink()
    assert exit_status(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1


def test_runs_with_pose_dependence_get_its_table_with_paired_differences(tmp_path, capsys):
    outs = []
    for seed in range(3):
        out = compare_folder(tmp_path, seed, sets=("cuhk03_occ",))
        for variant in ("pfd", "vit_baseline"):
            path = out / variant / "test" / "metrics.json"
            rec = json.loads(path.read_text())
            shift = 0.05 if variant == "pfd" else 0.0  # the baseline's rows do not move with the keypoints
            rec["pose_dependence"] = {"rows": [
                {"keypoints": k, "mAP": rec["mAP"] + d * shift, "rank1": rec["rank1"], "buckets": []}
                for k, d in (("own", 0), ("none", -1 - seed), ("shuffled", -1), ("oracle", 1))]}
            path.write_text(json.dumps(rec))
        outs.append(str(out))
    assert exit_status(main, outs) == 0
    out = capsys.readouterr().out
    assert "**cuhk03_occ, pose dependence** (3 seeds" in out
    assert ("| own mAP | R-1 | none mAP | R-1 | shuffled mAP | R-1 | oracle mAP | R-1 | own - none | oracle - own |"
            in out)
    assert "| pfd | 51.0 ± 1.0 | 61.0 ± 1.0 | 41.0 ± 4.0 |" in out and "| +10.0 ± 5.0 | +5.0 ± 0.0 |" in out
    assert "| +0.0 ± 0.0 | +0.0 ± 0.0 |" in out  # the baseline's
    single = [str(compare_folder(tmp_path / "plain", seed, sets=("cuhk03",))) for seed in range(2)]
    assert exit_status(main, single) == 0 and "pose dependence" not in capsys.readouterr().out


def test_variants_bucketed_otherwise_in_every_folder_get_the_overall_columns(tmp_path, capsys):
    """Variants posed by different estimators (issue 34's learned keypoints) bucket their queries otherwise."""
    outs = []
    for seed in range(3):
        out = compare_folder(tmp_path, seed, sets=("cuhk03_occ",))
        path = out / "pfd" / "test" / "metrics.json"
        path.write_text(json.dumps(record("cuhk03_occ", 0.5 + seed / 100, buckets=((0, 10),))))
        outs.append(str(out))
    assert exit_status(main, outs) == 0
    out = capsys.readouterr().out
    assert "**cuhk03_occ** (3 seeds" in out and "buckets of cuhk03_occ differ in every folder" in out
    assert "| variant | all (10) mAP | R-1 |\n" in out and "vis (" not in out.split("note: the variants'")[1]
    assert "| pfd | 51.0 ± 1.0 | 61.0 ± 1.0 |" in out and "| pfd - vit_baseline | +10.0 ± 0.0 | +10.0 ± 0.0 |" in out
