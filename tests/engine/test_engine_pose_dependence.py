"""TEST.POSE_DEPENDENCE (pfd.engine.pose_dependence): the keypoint variants, the oracle from the occlusion
manifest, a model that ignores the pose (its rows do not move) and test.py's outputs."""
import json
import shutil

import numpy as np
import pytest
import torch

from pfd.data.datasets import build_dataset
from pfd.data.occlude import OccludeConfig, build_occluded, hidden_keypoints, read_manifest, read_mask
from pfd.data.sets import load_keypoints, load_training_set
from pfd.engine import evaluator
from pfd.engine.evaluator import prepare_test_sets
from pfd.engine.pose_dependence import (
    dependence_table,
    keypoint_variants,
    occluded_original_poses,
    pose_dependence,
)
from pfd.engine.trainer import Trainer
from pfd.model import build_model
from pfd.pose.cache import KeypointTable, shuffled_poses, without_poses
from pfd.pose.heatmap_maker import HeatmapMaker
from pfd.pose.heatmaps import render_heatmaps

from engine_tiny import DEMO_CONFIG, load_script, make_data, tiny_config, tiny_opts


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Tiny synthetic data and an occluded copy of it (pfd.data.occlude) beside it."""
    root = make_data(tmp_path_factory.mktemp("pose_dependence"))
    build_occluded("synthetic", root, root / "synthetic_occ", OccludeConfig(seed=3))
    return root


def table(n: int = 6) -> KeypointTable:
    rng = np.random.default_rng(0)
    keypoints = np.concatenate([rng.uniform(0, 60, (n, 17, 2)), rng.uniform(0.1, 1, (n, 17, 1))], axis=2)
    return KeypointTable([f"/x/{i}.jpg" for i in range(n)], keypoints, "test")


def test_none_hides_every_keypoint_and_keeps_positions():
    own = table()
    none = without_poses(own)
    assert none.paths == own.paths and (none.keypoints[:, :, 2] == 0).all()
    np.testing.assert_array_equal(none.keypoints[:, :, :2], own.keypoints[:, :, :2])
    assert (own.keypoints[:, :, 2] > 0).all()  # the input is left as it was


def test_shuffled_gives_every_image_another_images_keypoints_the_same_way_each_time():
    own = table(9)
    shuffled = shuffled_poses(own)
    sources = [int(np.flatnonzero((own.keypoints == row).all(axis=(1, 2)))[0]) for row in shuffled.keypoints]
    assert sorted(sources) == list(range(9))  # a permutation of the rows
    assert all(src != i for i, src in enumerate(sources))  # nobody keeps their own
    np.testing.assert_array_equal(shuffled_poses(own).keypoints, shuffled.keypoints)


def test_none_and_shuffled_give_other_heatmaps():
    own = table()
    heat = {name: render_heatmaps(torch.from_numpy(t.keypoints), (128, 64), 1.0)
            for name, t in (("own", own), ("none", without_poses(own)), ("shuffled", shuffled_poses(own)))}
    assert heat["none"].abs().max() == 0 and heat["own"].abs().max() > 0.1
    assert not torch.allclose(heat["shuffled"], heat["own"])


def test_oracle_is_the_unoccluded_originals_keypoints_with_the_manifests_covered_ones_hidden(root, tmp_path):
    cfg = tiny_config(root, tmp_path / "run")
    occluded = build_dataset("folder:" + str(root / "synthetic_occ"), root)
    source = build_dataset("synthetic", root)
    originals = load_keypoints(cfg, source.query, "synthetic")
    by_name = {p.rsplit("/", 1)[-1]: originals[p] for p in originals}
    own = KeypointTable([r.path for r in occluded.query + occluded.gallery],
                        np.zeros((len(occluded.query) + len(occluded.gallery), 17, 3)), "zeros")
    oracle = occluded_original_poses(cfg, evaluator.TestSet("occ", occluded, own))
    manifest = read_manifest(root / "synthetic_occ")
    assert set(oracle) == {r.path for r in occluded.query}
    hidden_total = 0
    for query in occluded.query:
        name = query.path.rsplit("/", 1)[-1]
        original = by_name[name]
        hidden = hidden_keypoints(original, read_mask(root / "synthetic_occ", manifest[f"query/{name}"]))
        np.testing.assert_array_equal(oracle[query.path][:, :2], original[:, :2])
        np.testing.assert_array_equal(oracle[query.path][:, 2], np.where(hidden, 0, original[:, 2]))
        hidden_total += int((hidden & (original[:, 2] > 0)).sum())
    assert hidden_total > 0  # the occluders do hide keypoints that were visible
    variants = keypoint_variants(cfg, evaluator.TestSet("occ", occluded, own))
    assert list(variants) == ["own", "none", "shuffled", "oracle"]
    gallery_rows = [own.paths.index(r.path) for r in occluded.gallery]
    np.testing.assert_array_equal(variants["oracle"].keypoints[gallery_rows], own.keypoints[gallery_rows])


def test_a_set_without_an_occlusion_manifest_has_no_oracle_row(root, tmp_path):
    cfg = tiny_config(root, tmp_path / "run")
    test_set = prepare_test_sets(cfg)[0]
    assert occluded_original_poses(cfg, test_set) is None
    assert list(keypoint_variants(cfg, test_set)) == ["own", "none", "shuffled"]


def dependence(root, tmp_path, name: str) -> dict:
    cfg = tiny_config(root, tmp_path / "run", "MODEL.NAME", name)
    test_set = prepare_test_sets(cfg)[0]
    torch.manual_seed(0)
    model = build_model(cfg, 16, 6, load_pretrained=False).eval()
    heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST, evaluation=True)
    return pose_dependence(model, cfg, test_set, torch.device("cpu"), heatmaps, None)


def test_the_vit_baseline_gives_the_same_numbers_with_any_keypoints(root, tmp_path):
    rows = dependence(root, tmp_path, "vit_baseline")["rows"]
    assert [r["keypoints"] for r in rows] == ["own", "none", "shuffled"]
    for row in rows[1:]:
        assert row["mAP"] == pytest.approx(rows[0]["mAP"], abs=1e-6)
        assert row["buckets"] == rows[0]["buckets"]


def test_pfd_numbers_move_with_the_keypoints_and_buckets_hold_the_same_queries(root, tmp_path):
    block = dependence(root, tmp_path, "pfd")
    rows = block["rows"]
    assert len({round(r["mAP"], 6) for r in rows}) > 1  # heatmaps reach PFD's feature
    counts = [[b["num_query"] for b in r["buckets"]] for r in rows]
    assert all(c == counts[0] for c in counts) and sum(counts[0]) == 24
    text = dependence_table(block, "title")
    assert text.splitlines()[0] == "title" and "shuffled" in text and "+0.00" in text


def test_test_py_writes_the_table_into_metrics_and_report(root, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_config(root, run, "TEST.EVAL", "false")).save(0, improved=False)
    out = tmp_path / "eval"
    load_script("test").main(["--config", str(DEMO_CONFIG),
                              *tiny_opts(root, out, "TEST.WEIGHT", str(run / "last.pth"),
                                         "TEST.POSE_DEPENDENCE", "true")])
    record = json.loads((out / "metrics.json").read_text())
    rows = record["pose_dependence"]["rows"]
    assert [r["keypoints"] for r in rows] == ["own", "none", "shuffled"]
    assert rows[0]["mAP"] == pytest.approx(record["mAP"], abs=1e-9)  # own is the evaluation itself
    assert rows[0]["buckets"] == [{k: b[k] for k in ("visible", "num_query", "mAP", "rank1")}
                                  for b in record["buckets"]["rows"]]
    assert "Pose dependence" in (out / "report.html").read_text()
    assert "with other keypoints" in capsys.readouterr().out


def test_shuffle_keypoints_trains_on_another_images_keypoints_seeded_by_the_run(root, tmp_path):
    own = load_training_set(tiny_config(root, tmp_path / "a"))[1]
    shuffled = load_training_set(tiny_config(root, tmp_path / "b", "DATALOADER.SHUFFLE_KEYPOINTS", "true"))[1]
    assert shuffled.paths == own.paths
    np.testing.assert_array_equal(shuffled.keypoints, shuffled_poses(own, 1234).keypoints)  # SOLVER.SEED's default
    assert not any(np.array_equal(a, b) for a, b in zip(own.keypoints, shuffled.keypoints))


def test_an_occluded_set_whose_queries_are_not_its_sources_has_no_oracle_row(root, tmp_path, caplog):
    copy = tmp_path / "other_occ"
    shutil.copytree(root / "synthetic_occ", copy)
    first = sorted((copy / "query").glob("*.jpg"))[0]
    shutil.copy(first, copy / "query" / "0999_c1s1_000001_00.jpg")  # a query the source never had
    with pytest.warns(UserWarning, match="1 of 25 queries have no image of their identity"):
        occluded = build_dataset("folder:" + str(copy), root)
    cfg = tiny_config(root, tmp_path / "run")
    with caplog.at_level("WARNING", logger="pfd"):
        assert occluded_original_poses(cfg, evaluator.TestSet("occ", occluded, None)) is None
    assert "0999_c1s1_000001_00.jpg" in caplog.text and "not queries of synthetic" in caplog.text
