"""Mean and spread over seeds of `python -m pfd.compare` runs: one markdown table per test set.

    python bench/compare_seeds.py OUT_SEED0 OUT_SEED1 OUT_SEED2 [--variants pfd vit_baseline]

Each OUT is a `pfd.compare --out` folder (one per SOLVER.SEED); the metrics are read from
OUT/VARIANT/test[/SET]/metrics.json, each test set (`folder:` ones too) named by its record's "dataset".
Cells are mean +- sample standard deviation in %, overall and per visible-keypoint bucket (with the
bucket's query count), then each variant minus vit_baseline (or the --pairs A:B given, e.g. pfd_occ:pfd).
A test set missing from some folders, or bucketed otherwise there, is tabled over the folders that
agree, under a note naming the others; variants bucketed otherwise in every folder (keypoints from
different estimators) get the overall columns only. Runs evaluated with TEST.POSE_DEPENDENCE get a
second table per test set: each variant's mAP / Rank-1 with its own, no, shuffled and oracle
keypoints, and the paired differences own - none and oracle - own (what the keypoints contribute,
issue 34).
A missing folder, variant or metrics file is one `error:` line (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pfd.errors import InvalidInputError, MissingFileError, require_folder, user_errors  # noqa: E402


def records(out: Path, variant: str) -> dict[str, dict]:
    """{test set: metrics.json record} of one variant of one compare folder."""
    test = require_folder(out / variant / "test", f"{out}: variant {variant}'s evaluation folder",
                          "the folder pfd.compare evaluates a variant into")
    files = sorted(test.glob("metrics.json")) + sorted(test.glob("*/metrics.json"))
    if not files:
        raise MissingFileError(f"{test} holds no metrics.json (nor TEST_SET/metrics.json): was {variant} evaluated?")
    found = {}
    for file in files:
        try:
            record = json.loads(file.read_text())
            found[str(record.get("dataset") or file.parent.name)] = record
        except (ValueError, AttributeError) as err:
            raise InvalidInputError(f"{file}: not a metrics.json record ({err})") from None
    return found


def groups(record: dict) -> list[str]:
    """The column groups: all queries, then each visibility bucket, with their query counts."""
    rows = (record.get("buckets") or {}).get("rows", [])
    return [f"all ({record['num_query']})"] + [f"{r['visible']} vis ({r['num_query']})" for r in rows]


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


def parse_pairs(pairs: list[str], variants: list[str]) -> list[tuple[str, str]]:
    """--pairs A:B as (A, B), each a variant of --variants; default: each variant minus vit_baseline."""
    if not pairs:
        return [(v, "vit_baseline") for v in variants if v != "vit_baseline" and "vit_baseline" in variants]
    out = []
    for pair in pairs:
        names = pair.split(":")
        if len(names) != 2 or not all(n in variants for n in names):
            raise InvalidInputError(f"--pairs {pair}: expected A:B with A and B among --variants "
                                    f"({', '.join(variants)})")
        out.append((names[0], names[1]))
    return out


def set_table(name: str, data: dict[str, list[dict]], outs: list[Path], pairs: list[tuple[str, str]]) -> str:
    """The markdown table of test set `name` over the folders whose every variant has it, bucketed alike;
    a note names the folders left out and why. Where the variants' buckets differ in every folder (their
    keypoints come from different estimators), the table has the overall columns only."""
    variants = list(data)
    present = [i for i in range(len(outs)) if all(name in data[v][i] for v in variants)]
    reference = groups(data[variants[0]][present[0]][name])
    sized = [i for i in present if all(groups(data[v][i][name])[0] == reference[0] for v in variants)]
    agree = [i for i in sized if all(groups(data[v][i][name]) == reference for v in variants)]
    seeds, columns = (agree, reference) if agree else (sized, reference[:1])
    lines = [f"\n**{name}** ({len(seeds)} seeds; mAP / Rank-1 in %, mean ± std)\n"]
    missing = [str(outs[i]) for i in range(len(outs)) if i not in present]
    other = [str(outs[i]) for i in present if i not in seeds]
    if missing:
        lines.append(f"> note: {name} is missing from {', '.join(missing)} (not evaluated there); left out\n")
    if other:
        lines.append(f"> note: {name} is bucketed or sized otherwise in {', '.join(other)} than in "
                     f"{outs[present[0]]} ({', '.join(reference)}); left out\n")
    if not agree:
        lines.append(f"> note: the variants' visibility buckets of {name} differ in every folder (keypoints from "
                     f"different estimators?); all queries only\n")
    lines.append("| variant | " + " | ".join(f"{g} mAP | R-1" for g in columns) + " |")
    lines.append("|---" * (1 + 2 * len(columns)) + "|")
    width = 2 * len(columns)  # mAP and Rank-1 per column group
    table = {v: np.array([cells(data[v][i][name])[:width] for i in seeds]).reshape(len(seeds), width) for v in variants}
    for v, arr in table.items():
        lines.append(f"| {v} | " + " | ".join(fmt(arr[:, i]) for i in range(arr.shape[1])) + " |")
    for a, b in pairs:
        diff = table[a] - table[b]
        lines.append(f"| {a} - {b} | " + " | ".join(fmt(diff[:, i], signed=True) for i in range(diff.shape[1])) + " |")
    return "\n".join(lines)


def pose_rows(record: dict) -> dict[str, dict]:
    """{keypoints: row} of a record's "pose_dependence" block ({} without one)."""
    return {row["keypoints"]: row for row in (record.get("pose_dependence") or {}).get("rows", [])}


def pose_table(name: str, data: dict[str, list[dict]], outs: list[Path]) -> str | None:
    """The markdown pose-dependence table of test set `name` over the folders where every variant has it,
    or None when no run of the set was evaluated with TEST.POSE_DEPENDENCE."""
    seeds = [i for i in range(len(outs)) if all(pose_rows(data[v][i].get(name, {})) for v in data)]
    if not seeds:
        return None
    kinds = list(pose_rows(data[next(iter(data))][seeds[0]][name]))
    lines = [f"\n**{name}, pose dependence** ({len(seeds)} seeds; mAP / Rank-1 in %, mean ± std)\n",
             "| variant | " + " | ".join(f"{k} mAP | R-1" for k in kinds) + " | own - none | oracle - own |",
             "|---" * (3 + 2 * len(kinds)) + "|"]
    for v in data:
        rows = [pose_rows(data[v][i][name]) for i in seeds]
        value = {(k, m): np.array([np.nan if k not in r else r[k][m] for r in rows], float)
                 for k in kinds for m in ("mAP", "rank1")}
        diffs = [value[("own", "mAP")] - value[("none", "mAP")],
                 value.get(("oracle", "mAP"), np.full(len(rows), np.nan)) - value[("own", "mAP")]]
        lines.append(f"| {v} | " + " | ".join(fmt(value[(k, m)]) for k in kinds for m in ("mAP", "rank1"))
                     + " | " + " | ".join(fmt(d, signed=True) for d in diffs) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outs", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", default=["pfd", "vit_baseline"])
    parser.add_argument("--pairs", nargs="+", default=[], metavar="A:B",
                        help="differences to print (default: each variant minus vit_baseline)")
    args = parser.parse_args(argv)
    with user_errors():
        for out in args.outs:
            require_folder(out, "compare folder", "a pfd.compare --out folder")
        pairs = parse_pairs(args.pairs, args.variants)
        data = {v: [records(out, v) for out in args.outs] for v in args.variants}
    for name in dict.fromkeys(name for runs in data.values() for found in runs for name in found):
        if any(all(name in data[v][i] for v in data) for i in range(len(args.outs))):
            print(set_table(name, data, args.outs, pairs), flush=True)
            dependence = pose_table(name, data, args.outs)
            if dependence:
                print(dependence, flush=True)
        else:
            print(f"\n> note: {name} was evaluated for some variants only, in every folder; no table", flush=True)


if __name__ == "__main__":
    main()
