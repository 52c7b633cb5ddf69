"""`python -m pfd.compare`: train PFD and the plain ViT baseline (and any ablation) on the same data,
budget and seed, evaluate each with test.py's own code, and print one table by occlusion bucket.

Every variant is the given config plus its own overrides (`MODEL.NAME vit_baseline`, `MODEL.PFA false`, ...);
everything else (data, epochs, batch, seed, input size) is shared. Variant NAME trains into OUT/NAME
(checkpoints, log, curves) and is evaluated into OUT/NAME/test, as test.py writes it (metrics.json with
its per-bucket block, plots, report.html; one subfolder per test set when there are several).
OUT/compare.json gathers the metrics of every test set; one table per test set is printed on stdout,
and OUT/report.html shows the variants side by side per test set (metrics, differences to the
baseline, CMC) with their training curves and links to each variant's own reports.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from ..config import load_config
from ..data.sets import evaluation_datasets
from ..errors import OutputExistsError
from ..inference.checkpoint import load_checkpoint
from ..io import atomic_write, child_path, claim_output_dir, flat_name
from . import report
from .rundir import existing_run
from .tester import run_test
from .trainer import train

__all__ = ["DEFAULT_VARIANTS", "run_compare", "compare_table", "compare_tables", "compare_page"]

logger = logging.getLogger("pfd")
BASELINE = "vit_baseline"
DEFAULT_VARIANTS = {"pfd": ["MODEL.NAME", "pfd"], BASELINE: ["MODEL.NAME", BASELINE]}


def _finished(run_dir: Path, max_epochs: int) -> bool:
    """True when run_dir holds a last.pth trained for max_epochs epochs."""
    last = run_dir / "last.pth"
    return last.is_file() and int(load_checkpoint(last).get("epoch", -1)) == max_epochs


def _older_compare(folder: Path) -> bool:
    """A compare folder of an earlier version: compare.json, or variant runs, and nothing else."""
    return all(p.name == "compare.json" or (p.is_dir() and (existing_run(p) or not any(p.iterdir())))
               for p in folder.iterdir())


def _planned(config: str, opts: Sequence[str], out: Path, variants: dict[str, list[str]],
             reuse: bool) -> list[tuple[str, list[str], Path, bool]]:
    """(name, overrides, run folder, reused) per variant, all checked before the first one trains:
    a variant folder that is not empty is refused unless `reuse` finds a finished run there, and a
    test set that cannot be read (e.g. cuhk03_occ not made yet) fails now, not after the training."""
    plan = []
    for name, extra in variants.items():
        run_dir = child_path(out, name, "variant")
        cfg = load_config(config, [*opts, *extra, "OUTPUT_DIR", str(run_dir), "TEST.EVAL", "false"])
        evaluation_datasets(cfg)
        reused = reuse and _finished(run_dir, cfg.SOLVER.MAX_EPOCHS)
        if not reused and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise OutputExistsError(f"{run_dir} is not empty: pick another --out, or pass --reuse to evaluate "
                                    "finished runs without retraining; nothing was trained")
        plan.append((name, extra, run_dir, reused))
    return plan


def run_compare(config: str, opts: Sequence[str], out_dir: str | Path, variants: dict[str, list[str]],
                reuse: bool = False) -> dict[str, dict[str, dict]]:
    """Train and evaluate every variant; returns {test set: {variant: test.py's metrics record}}.

    `reuse`: a variant whose OUT/NAME/last.pth already finished its epochs is evaluated, not retrained.
    A variant folder holding anything else is refused before any variant trains (nothing of another
    run is overwritten), and so is an --out that is not a compare folder of ours (pfd.io's guard).
    """
    out = Path(out_dir)
    plan = _planned(config, opts, out, variants, reuse)
    claim_output_dir(out, "compare", adopt=_older_compare, hint="choose a new or empty --out")
    results: dict[str, dict[str, dict]] = {}  # test set -> variant -> record
    for name, extra, run_dir, reused in plan:
        if reused:
            logger.info("compare: %s already trained in %s, evaluating it", name, run_dir)
        else:
            logger.info("compare: training %s (%s) into %s", name, " ".join(extra) or "config as given", run_dir)
            train(load_config(config, [*opts, *extra, "OUTPUT_DIR", str(run_dir), "TEST.EVAL", "false"]))
        test_cfg = load_config(config, [*opts, *extra, "OUTPUT_DIR", str(run_dir / "test"),
                                        "TEST.WEIGHT", str(run_dir / "last.pth")])
        for test_set, record in run_test(test_cfg).items():
            results.setdefault(test_set, {})[name] = record
    payload = {"config": str(config), "overrides": list(opts), "variants": variants, "metrics": results}
    atomic_write(out / "compare.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    report.write_page(out / report.REPORT_FILE, compare_page(results, out))
    return results


def _groups(record: dict) -> list[str]:
    """The column groups of `_cells`: all queries, then each visibility bucket, with their query counts."""
    return [f"all ({record['num_query']})"] + [f"{r['visible']} vis ({r['num_query']})"
                                               for r in (record.get("buckets") or {}).get("rows", [])]


def _cells(record: dict) -> list[float | None]:
    """[mAP, rank1] overall, then [mAP, rank1] per visibility bucket."""
    cells = [record["mAP"], record["rank1"]]
    for row in (record.get("buckets") or {}).get("rows", []):
        cells += [row["mAP"], row["rank1"]]
    return cells


def compare_table(results: dict[str, dict], baseline: str = BASELINE) -> str:
    """One row per variant (values in %), then one row per variant minus the baseline (points).

    Columns: mAP and Rank-1 over all queries, then per visibility bucket (with its query count).
    """
    groups = _groups(next(iter(results.values())))
    width = max(len(n) for n in results) + len(f" - {baseline}")
    head1 = f"{'':<{width}}" + "".join(f" {g:>15}" for g in groups)
    head2 = f"{'variant':<{width}}" + " " + " ".join(f"{'mAP':>7} {'R-1':>7}" for _ in groups)

    def line(label: str, cells: list, signed: bool) -> str:
        fmt = "{:>+7.1f}" if signed else "{:>7.1f}"
        text = " ".join(f"{'-':>7}" if v is None else fmt.format(100 * v) for v in cells)
        return f"{label:<{width}} {text}"

    lines = [head1, head2] + [line(name, _cells(rec), False) for name, rec in results.items()]
    if baseline in results:
        base = _cells(results[baseline])
        for name, rec in results.items():
            if name != baseline:
                diff = [None if a is None or b is None else a - b for a, b in zip(_cells(rec), base)]
                lines.append(line(f"{name} - {baseline}", diff, True))
    return "\n".join(lines)


def compare_tables(results: dict[str, dict[str, dict]], baseline: str = BASELINE) -> str:
    """`compare_table` of every test set, each under its name."""
    return "\n\n".join(f"{test_set}\n{compare_table(by_variant, baseline)}" for test_set, by_variant in results.items())


def compare_page(results: dict[str, dict[str, dict]], out: Path, baseline: str = BASELINE) -> str:
    """OUT/report.html. Per test set: one row per metric (mAP and Rank-1, all queries and per bucket, in
    %), one column per variant, then each variant minus the baseline (points; green up, red down), the
    variants' CMC side by side and links to their own reports (test.py's folder of that set). Then each
    variant's training curves."""
    names = list(dict.fromkeys(name for by_variant in results.values() for name in by_variant))
    sections = [section for test_set, by_variant in results.items()
                for section in _set_sections(test_set, by_variant, out, len(results), baseline)]
    curves = [report.figure(f"{quote(n)}/training_curves.png", n, width=480) for n in names
              if (out / n / "training_curves.png").is_file()]
    if curves:
        sections.append("<h2>Training curves</h2>" + "".join(curves))
    return report.page("Comparison: " + ", ".join(names), sections)


def _set_sections(test_set: str, results: dict[str, dict], out: Path, num_sets: int, baseline: str) -> list[str]:
    """compare_page's sections for one test set: the metrics table, the CMC pictures, the report links."""
    names = list(results)
    labels = [f"{group} {metric}" for group in _groups(results[names[0]]) for metric in ("mAP", "R-1")]
    cells = {name: _cells(rec) for name, rec in results.items()}
    others = [n for n in names if n != baseline] if baseline in results else []
    folder = "test" if num_sets == 1 else f"test/{flat_name(test_set)}"  # the set's folder in OUT/NAME (set_output_dir)

    def diff(a, b):
        if a is None or b is None:
            return "-"
        return (report.percent(a - b, signed=True), "up" if a > b else "down" if a < b else "")

    rows = [[label, *(report.percent(cells[n][i]) for n in names), *(diff(cells[n][i], cells[baseline][i])
                                                                     for n in others)]
            for i, label in enumerate(labels)]
    header = ["", *names, *(f"{n} - {baseline}" for n in others)]
    title = report.esc(test_set)
    sections = [f"<h2>{title}: metrics (%), differences in points</h2>" + report.table(header, rows)]
    cmc = [report.figure(f"{quote(n)}/{quote(folder)}/cmc.png", n, width=480) for n in names
           if (out / n / folder / "cmc.png").is_file()]
    if cmc:
        sections.append(f"<h2>{title}: CMC</h2>" + "".join(cmc))
    links = "".join(f"<li><a href=\"{quote(n)}/{quote(folder)}/{report.REPORT_FILE}\">{report.esc(n)}</a></li>"
                    for n in names)
    sections.append(f"<h2>{title}: each variant's evaluation</h2><ul>{links}</ul>")
    return sections
