"""report.html: test.py writes it beside metrics.json (metrics, buckets, curves, provenance, best and worst
ranked lists per bucket, images linked relatively) and it opens from disk in headless Chromium; compare's
page puts the variants side by side with their differences."""
import json
import re
import shutil

import numpy as np
from PIL import Image
from serve_tiny import artefact_dir, browser_page

from pfd.config import load_config
from pfd.engine.compare import compare_page
from pfd.engine.report import bucket_extremes, evaluation_page, table
from pfd.engine.trainer import Trainer
from pfd.retrieval.plots import plot_training_curves

from engine_tiny import DEMO_CONFIG, load_script, make_data, tiny_opts


def test_bucket_extremes_pick_best_and_worst_without_repeats():
    ap = np.array([0.9, 0.1, np.nan, 0.5, 0.7, 0.3, 1.0, 0.2])
    visible = np.array([2, 3, 4, 5, 12, 13, 14, 15])  # buckets 0-5: rows 0-3, 6-11: none, 12-17: rows 4-7
    lists = bucket_extremes(ap, visible, [0, 6, 12], count=2)
    got = {(item["bucket"], item["which"]): item["rows"].tolist() for item in lists}
    assert got == {("0-5", "best"): [0, 3], ("0-5", "worst"): [1],  # row 2 has no true match (NaN)
                   ("12-17", "best"): [6, 4], ("12-17", "worst"): [7, 5]}


def test_tables_escape_their_cells():
    html = table(["name"], [["<script>alert(1)</script>"]])
    assert "<script>" not in html and "&lt;script&gt;" in html


def image_links(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_the_evaluation_page_links_only_local_files():
    record = {"dataset": "x", "num_query": 3, "num_gallery": 9, "num_valid_queries": 3, "mAP": 0.5, "rank1": 0.25,
              "mINP": 0.1, "buckets": None, "provenance": {"config_hash": "abc", "pose": {"backend": "synthetic"}}}
    html = evaluation_page(record, [("cmc.png", "CMC")], [])
    assert image_links(html) == ["cmc.png"] and "50.00" in html and "25.00" in html and "pose.backend" in html
    assert "<script" not in html and "http" not in html


def test_test_py_writes_report_html_that_opens_in_chromium(tmp_path, tmp_path_factory):
    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    Trainer(load_config(DEMO_CONFIG, tiny_opts(data, run, "TEST.EVAL", "false"))).save(0, improved=False)
    log = tmp_path / "metrics.jsonl"  # the run's curves, as training draws them
    log.write_text("\n".join(json.dumps(r) for r in ({"kind": "train", "epoch": 1, "total": 2.0},
                                                      {"kind": "train", "epoch": 2, "total": 1.5},
                                                      {"kind": "eval", "epoch": 2, "dataset": "synthetic",
                                                       "mAP": 0.3})))
    plot_training_curves(log, run / "training_curves.png")
    out = tmp_path / "eval"
    load_script("test").main(["--config", str(DEMO_CONFIG),
                              *tiny_opts(data, out, "TEST.WEIGHT", str(run / "last.pth"))])

    html = (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{100 * metrics['mAP']:.2f}" in html and f"{100 * metrics['rank1']:.2f}" in html
    for row in metrics["buckets"]["rows"]:
        assert f"<td class=\"key\">{row['visible']}</td>" in html
    assert metrics["provenance"]["checkpoint"]["sha256"] in html and "<script" not in html
    links = image_links(html)
    assert links[:2] == ["cmc.png", "training_curves.png"]
    assert any(re.fullmatch(r"ranked_\d+-\d+_best\.png", x) for x in links)
    assert any(re.fullmatch(r"ranked_\d+-\d+_worst\.png", x) for x in links)
    assert all("/" not in x and (out / x).is_file() for x in links)  # beside report.html, relative links

    copy = tmp_path / "copied"  # the folder works wherever it goes
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    with browser_page() as page:
        page.goto(copy.joinpath("report.html").as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
        page.screenshot(path=str(artefact_dir(tmp_path_factory) / "report_page.png"), full_page=True)
    assert [src for src, _ in widths] == links and all(w > 0 for _, w in widths), widths


def test_compare_page_shows_variants_side_by_side_with_differences(tmp_path):
    def record(m_ap, rank1, b_map):
        return {"mAP": m_ap, "rank1": rank1, "num_query": 10,
                "buckets": {"rows": [{"visible": "0-5", "num_query": 4, "mAP": b_map, "rank1": None}]}}

    results = {"synthetic": {"pfd": record(0.5, 0.6, 0.3), "vit_baseline": record(0.4, 0.7, 0.3)}}
    (tmp_path / "pfd" / "test").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "pfd" / "test" / "cmc.png")
    html = compare_page(results, tmp_path)
    assert "<h2>synthetic: metrics (%), differences in points</h2>" in html
    header = re.search(r"<thead>(.*?)</thead>", html).group(1)
    assert re.findall(r"<th[^>]*>([^<]*)</th>", header) == ["", "pfd", "vit_baseline", "pfd - vit_baseline"]
    assert "<td class=\"key\">all (10) mAP</td><td>50.00</td><td>40.00</td><td class=\"up\">+10.00</td>" in html
    assert "<td>60.00</td><td>70.00</td><td class=\"down\">-10.00</td>" in html
    assert "<td>30.00</td><td>30.00</td><td>+0.00</td>" in html and "<td>-</td><td>-</td><td>-</td>" in html
    assert image_links(html) == ["pfd/test/cmc.png"]  # only the pictures that exist
    assert 'href="vit_baseline/test/report.html"' in html


def test_compare_page_shows_every_test_set_from_its_own_folder(tmp_path):
    """With several test sets test.py writes each into test/SET: the page has one table per set, and its
    pictures and links point there."""
    def record(m_ap):
        return {"mAP": m_ap, "rank1": m_ap, "num_query": 10, "buckets": None}

    results = {"cuhk03": {"pfd": record(0.3), "vit_baseline": record(0.1)},
               "cuhk03_occ": {"pfd": record(0.2), "vit_baseline": record(0.15)}}
    for name in ("cuhk03", "cuhk03_occ"):
        (tmp_path / "pfd" / "test" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "pfd" / "test" / name / "cmc.png")
    html = compare_page(results, tmp_path)
    assert re.findall(r"<h2>([^<:]*): metrics", html) == ["cuhk03", "cuhk03_occ"]
    assert "<td>30.00</td><td>10.00</td><td class=\"up\">+20.00</td>" in html
    assert "<td>20.00</td><td>15.00</td><td class=\"up\">+5.00</td>" in html
    assert image_links(html) == ["pfd/test/cuhk03/cmc.png", "pfd/test/cuhk03_occ/cmc.png"]
    assert 'href="vit_baseline/test/cuhk03_occ/report.html"' in html and 'href="pfd/test/report.html"' not in html
