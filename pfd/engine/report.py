"""report.html: an evaluation as one page that opens from the file system (no script, no network).

test.py writes it beside metrics.json: the metrics table, the metrics per visibility bucket, the CMC
curve, the training curves when the checkpoint's run folder has them, the provenance block, and the
ranked lists of the best and the worst queries of each visibility bucket (keypoints drawn). Images
sit next to report.html under relative links, so the folder can be copied or served as it is.
`python -m pfd.compare` builds its page (the variants side by side) from the same pieces.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_write
from ..retrieval.occlusion import check_buckets

__all__ = [
    "REPORT_FILE",
    "REPORT_QUERIES",
    "bucket_extremes",
    "esc",
    "evaluation_page",
    "figure",
    "page",
    "percent",
    "table",
    "write_page",
]

REPORT_FILE = "report.html"
REPORT_QUERIES = 3  # rows of each best / worst ranked list
METRIC_COLUMNS = ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f0f0ee; } td.key, th.key { text-align: left; }
td.up { color: #1a7f37; } td.down { color: #c62828; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: 0.85rem; color: #555; }
.legend { font-size: 0.85rem; color: #555; } code { font-size: 0.85rem; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def percent(value, signed: bool = False) -> str:
    """A fraction as a percentage with 2 decimals ("-" for None)."""
    if value is None:
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def table(header: Sequence[str], rows: Iterable[Sequence], keys: int = 1) -> str:
    """An HTML table; the first `keys` columns are labels (left-aligned), cells are escaped. A cell may
    be a (text, css_class) pair."""
    def cell(i: int, value) -> str:
        text, css = value if isinstance(value, tuple) else (value, "")
        css = " ".join(filter(None, ["key" if i < keys else "", css]))
        return f"<td class=\"{css}\">{esc(text)}</td>" if css else f"<td>{esc(text)}</td>"

    head = "".join(f"<th class=\"key\">{esc(h)}</th>" if i < keys else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(src: str, caption: str, width: int | None = None) -> str:
    """An image by relative link, with a caption."""
    size = f" width=\"{width}\"" if width else ""
    return (f"<figure><a href=\"{esc(src)}\"><img src=\"{esc(src)}\" alt=\"{esc(caption)}\"{size}></a>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, sections: Iterable[str]) -> str:
    """A whole HTML document: inline style, no script, no external resource."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1>" + "\n".join(sections) + "</body></html>\n")


def write_page(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def bucket_extremes(query_ap, num_visible, buckets: Sequence[int], count: int = REPORT_QUERIES) -> list[dict]:
    """The best and the worst queries of each visibility bucket, for the ranked lists of the report.

    query_ap [Nq] (NaN without a true match), num_visible [Nq] visible keypoints, buckets: lower ends
    (TEST.VIS_BUCKETS). Returns {"bucket": "6-11", "which": "best" | "worst", "rows": query indices}
    per non-empty list: the `count` highest AP (best first) and the `count` lowest (worst first), never
    the same query twice; a bucket without a valid query has none.
    """
    query_ap = np.asarray(query_ap, dtype=np.float64)
    counts = np.asarray(num_visible, dtype=np.int64)
    lists = []
    for low, high in check_buckets(buckets):
        members = np.flatnonzero((counts >= low) & (counts <= high) & ~np.isnan(query_ap))
        ranked = members[np.argsort(-query_ap[members], kind="stable")]  # best first
        best = ranked[:count]
        worst = ranked[max(len(best), len(ranked) - count):][::-1].copy()  # worst first
        lists += [{"bucket": f"{low}-{high}", "which": which, "rows": rows}
                  for which, rows in (("best", best), ("worst", worst)) if len(rows)]
    return lists


def _flatten(block, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ("a.b.c", value) rows."""
    if isinstance(block, dict):
        return [row for key, value in block.items() for row in _flatten(value, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), "-" if block is None else str(block))]


def _dependence_section(block: dict) -> str:
    """The pose-dependence table (TEST.POSE_DEPENDENCE): mAP / Rank-1 per keypoint variant, overall and per
    bucket of the own keypoints' visible count."""
    own = block["rows"][0]["mAP"]
    buckets = [f"{b['visible']} ({b['num_query']})" for b in block["rows"][0]["buckets"]]
    rows = [[r["keypoints"], percent(r["mAP"]), percent(r["rank1"]),
             percent(None if r["mAP"] is None or own is None else r["mAP"] - own, signed=True),
             *(f"{percent(b['mAP'])} / {percent(b['rank1'])}" for b in r["buckets"])] for r in block["rows"]]
    return ("<h2>Pose dependence (%)</h2><p class=\"legend\">The same model with other keypoints: own (the "
            "evaluation's), none (nothing visible), shuffled (another image's), oracle (an occluded set's "
            "unoccluded originals, keypoints under the occluder hidden). Buckets: visible keypoints of own "
            f"(confidence &ge; {esc(block['keypoint_threshold'])}), mAP / Rank-1.</p>"
            + table(["keypoints", "mAP", "rank1", "mAP - own", *buckets], rows))


def evaluation_page(record: dict, figures: Sequence[tuple[str, str]], ranked: Sequence[dict]) -> str:
    """report.html of one test set: `record` is its metrics.json content; `figures` (file, caption) pairs
    (CMC, training curves); `ranked` the bucket_extremes lists, each with "file" (its picture) and
    "ap" (the AP of each row)."""
    name = record.get("dataset", "")
    metrics = table(["queries", "gallery", "valid queries", *METRIC_COLUMNS],
                    [[record["num_query"], record["num_gallery"], record["num_valid_queries"],
                      *(percent(record.get(c)) for c in METRIC_COLUMNS)]], keys=0)
    sections = [f"<h2>Metrics (%)</h2>{metrics}"]
    buckets = record.get("buckets")
    if buckets:
        rows = [[r["visible"], r["num_query"], r["num_valid_queries"], percent(r["mAP"]), percent(r["rank1"])]
                for r in buckets["rows"]]
        sections.append(f"<h2>By visible keypoints (confidence &ge; {esc(buckets['keypoint_threshold'])})</h2>"
                        + table(["visible", "queries", "valid queries", "mAP", "rank1"], rows))
    dependence = record.get("pose_dependence")
    if dependence and "rows" in dependence:
        sections.append(_dependence_section(dependence))
    sections.append("<h2>Curves</h2>" + "".join(figure(src, caption) for src, caption in figures))
    if ranked:
        lists = "".join(
            f"<h3>{esc(r['which'])} queries, {esc(r['bucket'])} visible keypoints</h3>"
            + figure(r["file"], "AP per row: " + ", ".join(f"{100 * ap:.1f}%" for ap in r["ap"]))
            for r in ranked)
        sections.append("<h2>Ranked lists</h2><p class=\"legend\">Each row: the query (blue frame; keypoints "
                        "cyan when visible, magenta when occluded), then its top matches under the evaluation "
                        "protocol, green for the same identity, red for another.</p>" + lists)
    provenance = _flatten(record.get("provenance") or {})
    sections.append("<h2>Provenance</h2>" + table(["key", "value"], provenance, keys=2))
    return page(f"Evaluation: {name}", sections)
