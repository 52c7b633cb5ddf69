"""Mean and spread over seeds of `python -m pfd.compare` runs: one markdown table per test set.

    python bench/compare_seeds.py OUT_SEED0 OUT_SEED1 OUT_SEED2 [--variants pfd vit_baseline]

Each OUT is a `pfd.compare --out` folder (one per SOLVER.SEED); the metrics are read from
OUT/VARIANT/test[/SET]/metrics.json. Cells are mean +- sample standard deviation in %, overall and
per visible-keypoint bucket (with the bucket's query count), then each variant minus vit_baseline
(or the --pairs A:B given, e.g. pfd_occ:pfd).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def records(out: Path, variant: str) -> dict[str, dict]:
    """{test set: metrics.json record} of one variant of one compare folder."""
    test = out / variant / "test"
    files = sorted(test.glob("*/metrics.json")) or [test / "metrics.json"]
    return {f.parent.name if f.parent != test else "test": json.loads(f.read_text()) for f in files}


def cells(record: dict) -> list[float]:
    values = [record["mAP"], record["rank1"]]
    for row in (record.get("buckets") or {}).get("rows", []):
        values += [np.nan if row[key] is None else row[key] for key in ("mAP", "rank1")]
    return values


def fmt(values: np.ndarray, signed: bool = False) -> str:
    values = 100 * values[~np.isnan(values)]
    if len(values) == 0:
        return "-"
    mean = f"{values.mean():+.1f}" if signed else f"{values.mean():.1f}"
    return f"{mean} ± {values.std(ddof=1):.1f}" if len(values) > 1 else mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outs", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", default=["pfd", "vit_baseline"])
    parser.add_argument("--pairs", nargs="+", default=[], metavar="A:B",
                        help="differences to print (default: each variant minus vit_baseline)")
    args = parser.parse_args()
    data = {v: [records(out, v) for out in args.outs] for v in args.variants}
    first = data[args.variants[0]][0]
    for name, record in first.items():
        groups = ["all"] + [f"{r['visible']} vis" for r in (record.get("buckets") or {}).get("rows", [])]
        counts = [record["num_query"]] + [r["num_query"] for r in (record.get("buckets") or {}).get("rows", [])]
        print(f"\n**{name}** ({len(args.outs)} seeds; mAP / Rank-1 in %, mean ± std)\n")
        print("| variant | " + " | ".join(f"{g} ({c}) mAP | R-1" for g, c in zip(groups, counts)) + " |")
        print("|---" * (1 + 2 * len(groups)) + "|")
        table = {v: np.array([cells(runs[name]) for runs in data[v]]) for v in args.variants}
        for v, arr in table.items():
            print(f"| {v} | " + " | ".join(fmt(arr[:, i]) for i in range(arr.shape[1])) + " |")
        pairs = [p.split(":") for p in args.pairs] or [(v, "vit_baseline") for v in table if v != "vit_baseline"]
        for a, b in pairs:
            if a in table and b in table:
                row = " | ".join(fmt((table[a] - table[b])[:, i], signed=True) for i in range(table[a].shape[1]))
                print(f"| {a} - {b} | {row} |")


if __name__ == "__main__":
    main()
