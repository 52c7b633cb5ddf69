"""The plots are real PNGs of the documented pixel size, written without leftovers; keypoints are drawn where
they are."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from pfd.engine.logger import MetricsWriter
from pfd.retrieval.plots import (
    BORDER,
    KEYPOINT_COLOURS,
    PAD,
    QUERY_GAP,
    plot_cmc,
    plot_ranked_lists,
    plot_training_curves,
    ranked_grid_size,
    shown_queries,
)


def test_cmc_png(tmp_path):
    cmc = np.minimum(1.0, np.linspace(0.6, 1.2, 50))
    path = plot_cmc(cmc, tmp_path / "out" / "cmc.png", label="PFD", size_px=(500, 400))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (500, 400)
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 5  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["cmc.png"]
    with pytest.raises(ValueError, match="non-empty"):
        plot_cmc([], tmp_path / "x.png")


def test_shown_queries_by_ap_shares_and_by_list():
    ap = np.array([0.2, np.nan, 0.9, 0.5, 0.9, 0.1, 0.7])  # query 1 has no true match
    # best first, ties in list order: 2 (0.9), 4 (0.9), 6, 3, 0, 5; three shares of two, middle of each
    np.testing.assert_array_equal(shown_queries(ap, 3), [4, 3, 5])
    np.testing.assert_array_equal(shown_queries(ap, 10), [2, 4, 6, 3, 0, 5])  # no more than the valid queries
    np.testing.assert_array_equal(shown_queries(ap, 3, "list"), [0, 3, 6])  # whatever the results
    with pytest.raises(ValueError, match="'best'"):
        shown_queries(ap, 3, "best")
    assert shown_queries(np.full(3, np.nan), 3).shape == (0,)  # no query with a true match: no rows


def test_ranked_list_grid(tmp_path):
    colours = [(200, 200, 200), (30, 30, 30), (120, 60, 10)]
    paths = []
    for i, colour in enumerate(colours):
        paths.append(tmp_path / f"img{i}.jpg")
        Image.new("RGB", (32, 64), colour).save(paths[-1])
    query_paths, query_pids = [str(paths[0]), str(paths[1])], [1, 2]
    gallery_paths, gallery_pids = [str(p) for p in paths], [1, 2, 3]
    ranked = np.array([[0, 2, 1, -1], [1, 0, 2, 0]])
    out = plot_ranked_lists(query_paths, query_pids, gallery_paths, gallery_pids, ranked, tmp_path / "ranks.png",
                            topk=4, image_hw=(64, 32))
    with Image.open(out) as im:
        assert im.size == ranked_grid_size(2, 4, (64, 32))
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.shape[:2] == (ranked_grid_size(2, 4, (64, 32))[1], ranked_grid_size(2, 4, (64, 32))[0])
    green = ((rgb[..., 1] > 150) & (rgb[..., 0] < 80)).sum()
    red = ((rgb[..., 0] > 200) & (rgb[..., 1] < 80)).sum()
    assert green > 0 and red > 0  # both right and wrong matches are framed
    with pytest.raises(OSError, match="missing.jpg"):
        plot_ranked_lists([str(tmp_path / "missing.jpg")], [1], gallery_paths, gallery_pids, ranked[:1],
                          tmp_path / "bad.png")


def test_query_keypoints_drawn_in_two_colours(tmp_path):
    """Visible keypoints (confidence >= threshold) in one colour, occluded ones in the other, scaled
    from the image's own pixels to the thumbnail."""
    image = tmp_path / "q.png"
    Image.new("RGB", (64, 128), (128, 128, 128)).save(image)  # twice the thumbnail size
    kps = np.zeros((1, 17, 3), dtype=np.float32)
    kps[0, :, :2] = [32, 20]
    kps[0, 0] = [16, 40, 0.9]  # visible -> thumbnail (8, 20)
    kps[0, 1] = [48, 100, 0.1]  # occluded -> thumbnail (24, 50)
    kps[0, 2:, 2] = 0.3  # exactly the threshold: visible, all at (16, 10)
    kps[0, 16] = [500, 500, 1.0]  # outside the image: not drawn
    out = plot_ranked_lists([str(image)], [1], [str(image)], [1], np.array([[0]]), tmp_path / "k.png", topk=1,
                            image_hw=(64, 32), query_keypoints=kps, keypoint_threshold=0.3)
    with Image.open(out) as im:
        assert im.size == ranked_grid_size(1, 1, (64, 32))
        rgb = np.asarray(im.convert("RGB")).astype(int)
    origin = np.array([PAD + BORDER, PAD + BORDER])  # the query thumbnail's top-left corner (x, y)
    for (x, y), name in (((8, 20), "visible"), ((24, 50), "occluded"), ((16, 10), "visible")):
        px, py = origin + (x, y)
        assert tuple(rgb[py, px]) == KEYPOINT_COLOURS[name], (x, y, name)
    visible = (np.abs(rgb - KEYPOINT_COLOURS["visible"]).sum(-1) == 0).sum()
    occluded = (np.abs(rgb - KEYPOINT_COLOURS["occluded"]).sum(-1) == 0).sum()
    assert 0 < occluded < visible  # one occluded dot, two visible spots
    gallery_cell = rgb[:, PAD + QUERY_GAP + (32 + 2 * BORDER + PAD):]
    assert not (np.abs(gallery_cell - KEYPOINT_COLOURS["visible"]).sum(-1) == 0).any()  # gallery left bare
    with pytest.raises(ValueError, match="query_keypoints"):
        plot_ranked_lists([str(image)], [1], [str(image)], [1], np.array([[0]]), tmp_path / "x.png",
                          query_keypoints=kps[0])


def test_training_curves_png(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [{"kind": "train", "epoch": e, "time": 0.0, "total": 5.0 / e, "enc_id": 3.0 / e, "push": 0.4,
              "acc": 0.1 * e, "img_s": 50.0, "lr": 0.003} for e in range(1, 6)]
    lines.insert(3, {"kind": "eval", "epoch": 2, "dataset": "synthetic", "mAP": 0.2, "rank1": 0.3})
    lines.append({"kind": "eval", "epoch": 5, "dataset": "synthetic", "mAP": 0.5, "rank1": 0.6})
    lines.append({"kind": "train", "epoch": 5, "time": 1.0, "total": 0.9, "enc_id": 0.5, "push": 0.4,
                  "acc": 0.5, "img_s": 50.0, "lr": 0.003})  # a resumed run repeats epoch 5: the last one wins
    log.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    out = plot_training_curves(log, tmp_path / "run" / "curves.png", size_px=(800, 300))
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (800, 300)
        pixels = np.asarray(im.convert("L"))
    assert pixels[:, :400].std() > 5 and pixels[:, 400:].std() > 5  # both panels drawn
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]
    (tmp_path / "empty.jsonl").write_text(json.dumps({"kind": "eval", "epoch": 0, "mAP": 0.1}) + "\n")
    with pytest.raises(ValueError, match="empty.jsonl: no training records"):
        plot_training_curves(tmp_path / "empty.jsonl", tmp_path / "no.png")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl: no training records"):  # the torn line is skipped
        plot_training_curves(tmp_path / "bad.jsonl", tmp_path / "no.png")


def test_a_record_torn_by_a_kill_is_ended_by_the_next_append_and_skipped(tmp_path, caplog, monkeypatch):
    """A kill or a full disk mid-append leaves half a record; the next run's records must still parse."""
    monkeypatch.setattr(logging.getLogger("pfd"), "propagate", True)  # a run's logger stops at its handlers
    writer = MetricsWriter(tmp_path)
    writer.write("train", epoch=1, total=2.0, lr=0.1)
    with writer.path.open("a") as f:
        f.write('{"kind": "train", "epo')  # torn
    writer.write("train", epoch=2, total=1.0, lr=0.1)
    lines = writer.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["epoch"] == 2
    with caplog.at_level("WARNING"):
        plot_training_curves(writer.path, tmp_path / "curves.png")
    assert "metrics.jsonl, line 2: not a whole JSON record" in caplog.text
