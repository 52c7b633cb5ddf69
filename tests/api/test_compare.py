"""`python -m pfd.compare`: PFD and the ViT baseline trained alike, one table by occlusion bucket."""
import json

import pytest

from pfd.cli import compare
from pfd.engine.compare import compare_table, compare_tables
from pfd.errors import OutputExistsError

from engine_tiny import DEMO_CONFIG, exit_status, make_data, tiny_opts


def record(m_ap, rank1, buckets):
    rows = [{"visible": v, "num_query": n, "mAP": a, "rank1": r} for v, n, a, r in buckets]
    return {"mAP": m_ap, "rank1": rank1, "num_query": sum(b[1] for b in buckets), "buckets": {"rows": rows}}


def test_table_lists_variants_and_differences_per_bucket():
    results = {"pfd": record(0.5, 0.6, [("0-5", 3, 0.3, 0.25), ("6-17", 7, 0.6, 0.75)]),
               "vit_baseline": record(0.4, 0.7, [("0-5", 3, 0.1, 0.0), ("6-17", 7, None, None)])}
    lines = compare_table(results).splitlines()
    assert "all (10)" in lines[0] and "0-5 vis (3)" in lines[0] and "6-17 vis (7)" in lines[0]
    assert lines[2].split() == ["pfd", "50.0", "60.0", "30.0", "25.0", "60.0", "75.0"]
    assert lines[3].split() == ["vit_baseline", "40.0", "70.0", "10.0", "0.0", "-", "-"]
    assert lines[4].split() == ["pfd", "-", "vit_baseline", "+10.0", "-10.0", "+20.0", "+25.0", "-", "-"]


def test_one_table_per_test_set_under_its_name():
    """configs/cuhk03_cpu.yaml tests on CUHK03 and cuhk03_occ: both tables are printed, each named."""
    clean = {"pfd": record(0.5, 0.6, [("0-17", 4, 0.5, 0.6)]),
             "vit_baseline": record(0.4, 0.5, [("0-17", 4, 0.4, 0.5)])}
    occluded = {"pfd": record(0.2, 0.3, [("0-17", 4, 0.2, 0.3)]),
                "vit_baseline": record(0.1, 0.1, [("0-17", 4, 0.1, 0.1)])}
    text = compare_tables({"cuhk03": clean, "cuhk03_occ": occluded})
    first, second = text.split("\n\n")
    assert first.splitlines()[0] == "cuhk03" and second.splitlines()[0] == "cuhk03_occ"
    assert first.splitlines()[1:] == compare_table(clean).splitlines()
    assert second.splitlines()[-1].split() == ["pfd", "-", "vit_baseline", "+10.0", "+20.0", "+10.0", "+20.0"]


@pytest.mark.slow
def test_compare_trains_both_alike_and_reuses_finished_runs(tmp_path, capsys):
    root = make_data(tmp_path / "data")
    out = tmp_path / "cmp"
    opts = tiny_opts(root, tmp_path / "unused", "SOLVER.MAX_EPOCHS", "1")
    args = ["--config", str(DEMO_CONFIG), "--out", str(out), *opts]
    compare.main(args + ["--variant", "no_pfa", "MODEL.PFA", "false"])
    table = capsys.readouterr().out
    for name in ("pfd", "vit_baseline", "no_pfa", "pfd - vit_baseline", "no_pfa - vit_baseline", "12-17 vis"):
        assert name in table
    assert "synthetic" in table.splitlines()  # each test set's table under its name, on a line of its own
    saved = json.loads((out / "compare.json").read_text())
    metrics = saved["metrics"]["synthetic"]  # test set -> variant -> record
    assert list(saved["metrics"]) == ["synthetic"] and list(metrics) == ["pfd", "vit_baseline", "no_pfa"]
    assert saved["variants"]["no_pfa"] == ["MODEL.NAME", "pfd", "MODEL.PFA", "false"]
    for name in metrics:
        cfg_text = (out / name / "log.txt").read_text()
        assert "epoch 1/1" in cfg_text
        test_metrics = json.loads((out / name / "test" / "metrics.json").read_text())
        assert test_metrics["mAP"] == metrics[name]["mAP"] and test_metrics["buckets"]["rows"]
    assert "training vit_baseline" in (out / "vit_baseline" / "log.txt").read_text()
    page = (out / "report.html").read_text()  # the variants side by side, each linking its own report
    for name in metrics:
        assert f'href="{name}/test/report.html"' in page and (out / name / "test" / "report.html").is_file()
        assert f'src="{name}/test/cmc.png"' in page
    pfd_mtime = (out / "pfd" / "last.pth").stat().st_mtime_ns

    # --reuse evaluates the finished runs again without retraining them; same weights, same figures.
    compare.main(args + ["--reuse", "--only", "pfd"])
    assert (out / "pfd" / "last.pth").stat().st_mtime_ns == pfd_mtime
    again = json.loads((out / "compare.json").read_text())["metrics"]["synthetic"]
    assert list(again) == ["pfd"] and again["pfd"]["mAP"] == pytest.approx(metrics["pfd"]["mAP"])
    with pytest.raises(OutputExistsError, match="pfd is not empty"):  # --debug: the exception itself
        compare.main(args + ["--debug"])
    assert exit_status(compare.main, args) == 2 and "pfd is not empty" in capsys.readouterr().err


def test_bad_variants_fail_before_training(tmp_path, capsys):
    base = ["--config", str(DEMO_CONFIG), "--out", str(tmp_path / "x")]
    assert exit_status(compare.main, base + ["--variant", "odd", "MODEL.PFA"]) == 2
    assert exit_status(compare.main, base + ["--variant", "pfd", "MODEL.PFA", "false"]) == 2
    assert exit_status(compare.main, base + ["--variant", "typo", "MODEL.PFAA", "false"]) == 2
    assert exit_status(compare.main, base + ["--only", "nothing"]) == 2
    err = capsys.readouterr().err
    assert "KEY VALUE pairs" in err and "name is taken" in err and "MODEL.PFAA" in err and "no such variant" in err
    # A test set that is not there fails before the first variant trains, not after it.
    missing = ["DATASETS.ROOT_DIR", str(tmp_path), "DATASETS.TEST_NAMES", "cuhk03_occ"]
    assert exit_status(compare.main, base + missing) == 2
    assert f"tried {tmp_path / 'cuhk03_occ'}" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert not (tmp_path / "x").exists()
