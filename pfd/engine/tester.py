"""test.py's work: load a checkpoint, evaluate every test set, write metrics, plots and a table.

Outputs per test set (in OUTPUT_DIR, or in a folder of it named after the set when several:
`set_output_dir`; OUTPUT_DIR and each set's folder are new, an evaluation folder or a training run of
ours: rundir.claim_eval_dir): `metrics.json`
(the numbers, "buckets" by visible keypoints, and "provenance": see pfd.engine.provenance),
`cmc.png` (CMC curve), `ranked_lists.png` (TEST.NUM_VIS queries with their top 10, picked by
TEST.VIS_ORDER; none when 0) and `report.html` (pfd.engine.report: all of it on one page, with the
run's training curves and the best and worst queries of each visibility bucket, its pictures beside it).
Evaluation runs in TEST.AMP precision (float32 by default, as the reference).
"""
from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..config import FEATURE_KEYS, config_hash
from ..distributed import init_distributed, is_main_process
from ..errors import outputs_kept
from ..inference.checkpoint import config_differences, format_differences, load_eval_model, read_eval_checkpoint
from ..io import atomic_write, child_path, flat_name, sha256_file
from ..pose.heatmap_maker import HeatmapMaker
from ..precision import dtype_name, eval_dtype
from ..retrieval import plots
from ..retrieval.occlusion import bucket_table, evaluate_by_visibility, visible_counts
from . import report
from .checkpoint import atomic_copy
from .evaluator import FeatureSet, TestSet, evaluate_test_sets, prepare_test_sets, ranks_reported
from .logger import setup_logger
from .pose_dependence import dependence_table, pose_dependence
from .provenance import provenance
from .rundir import claim_eval_dir
from .trainer import CURVES_FILE

__all__ = ["protocol_warning", "trained_config_warning",
           "run_test", "set_output_dir", "write_json", "write_report", "summary_table", "visibility_buckets"]

logger = logging.getLogger("pfd")
TOPK_SHOWN = 10


def protocol_warning(cfg, checkpoint_format: str) -> str | None:
    """Why evaluating a reference PFD checkpoint under `cfg` is not the released model's protocol, or None.

    Released checkpoints were trained on raw HRNet heatmaps of the ViT's own input, computed online;
    cached Gaussian poses (or ImageNet-normalized HRNet input) give the model heatmaps it never saw.
    """
    if checkpoint_format != "reference_pfd":
        return None
    departures = []
    if not cfg.MODEL.POSE_ONLINE:
        departures.append("cached Gaussian poses (MODEL.POSE_ONLINE false)")
    elif cfg.MODEL.POSE_INPUT_NORM != "reference":
        departures.append(f"HRNet input re-normalized (MODEL.POSE_INPUT_NORM {cfg.MODEL.POSE_INPUT_NORM})")
    if cfg.TEST.AMP != "fp32":
        departures.append(f"TEST.AMP {cfg.TEST.AMP} (the reference evaluates in float32)")
    if not departures:
        return None
    return (f"evaluating a reference PFD checkpoint with {' and '.join(departures)}: these numbers are not the "
            f"released model's protocol. To restore it set MODEL.POSE_ONLINE true, MODEL.POSE_WEIGHT "
            f"<pose_hrnet_w48_256x192.pth>, MODEL.POSE_ARCH hrnet_w48, MODEL.POSE_INPUT_NORM reference and "
            f"TEST.AMP fp32")


# Feature keys an evaluation may choose for itself: which inference feature, where the poses come from,
# the test input size. Every other MODEL / INPUT feature key is part of what was trained.
EVAL_CHOICES = ("MODEL.FEAT_KIND", "MODEL.POSE_*", "INPUT.SIZE_TEST")


def trained_config_warning(stored_config: str, cfg) -> str | None:
    """Why `cfg` does not evaluate the model our checkpoint trained, or None: the MODEL / INPUT feature keys
    (except EVAL_CHOICES) whose value differs from the config the checkpoint stores. Switches such as
    MODEL.HEAT_WEIGHT change the forward without changing a weight shape, so the weights load silently."""
    if not stored_config:
        return None
    diffs = {key: values for key, values in config_differences(stored_config, cfg).items()
             if key in FEATURE_KEYS and key.startswith(("MODEL.", "INPUT."))
             and not any(fnmatch.fnmatchcase(key, pattern) for pattern in EVAL_CHOICES)}
    if not diffs:
        return None
    return (f"the checkpoint was trained with another model config than this one: {format_differences(diffs)}; "
            f"the model evaluated is not the one trained. Set these keys as the checkpoint has them")


def set_output_dir(out_root: Path, name: str, num_sets: int) -> Path:
    """Where test.py writes one test set's outputs: OUTPUT_DIR itself for one set, else a folder in it named
    after the set (pfd.io.flat_name: `synthetic`, or for `folder:../x/ds3` its last part and a short hash,
    `ds3-1f2e3d4c`), never outside OUTPUT_DIR nor deeper in it."""
    return out_root if num_sets == 1 else child_path(out_root, flat_name(name), "test set")


def write_json(obj, path: Path) -> None:
    """Atomic JSON write."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def metrics_record(metrics: dict, query: FeatureSet, gallery: FeatureSet) -> dict:
    """The numbers of metrics.json: mAP, Rank-k, mINP and the query/gallery counts."""
    cmc = metrics["cmc"]
    return {
        "mAP": float(metrics["mAP"]), **ranks_reported(cmc, (1, 5, 10, 20)), "mINP": float(metrics["mINP"]),
        "num_query": len(query.records), "num_gallery": len(gallery.records),
        "num_valid_queries": int(metrics["num_valid_queries"]),
    }


def query_visible_counts(cfg, keypoints, query: FeatureSet) -> np.ndarray:
    """[Nq] visible keypoints of each query (confidence >= MODEL.SKT_THRES, the model's visibility rule)."""
    return visible_counts(np.stack([keypoints[r.path] for r in query.records]), cfg.MODEL.SKT_THRES)


def visibility_buckets(cfg, keypoints, query: FeatureSet, gallery: FeatureSet, distmat: torch.Tensor) -> dict | None:
    """metrics.json's "buckets" block: mAP / Rank-1 of the queries grouped by visible keypoints
    (`query_visible_counts`; TEST.VIS_BUCKETS). None without a keypoint table (MODEL.POSE_ONLINE
    computes poses inside the model)."""
    if keypoints is None:
        return None
    counts = query_visible_counts(cfg, keypoints, query)  # [Nq]
    rows = evaluate_by_visibility(distmat, query.pids, gallery.pids, query.camids, gallery.camids, counts,
                                  cfg.TEST.VIS_BUCKETS)
    return {"keypoint_threshold": float(cfg.MODEL.SKT_THRES), "rows": rows}


def shown_keypoints(keypoints, query: FeatureSet, rows: np.ndarray) -> np.ndarray | None:
    """[len(rows), 17, 3] keypoints of the queries drawn in the ranked-list picture (None without a table)."""
    return None if keypoints is None else np.stack([keypoints[query.records[i].path] for i in rows])


def protocol_ranking(distmat: torch.Tensor, query: FeatureSet, gallery: FeatureSet, rows: np.ndarray) -> np.ndarray:
    """Top TOPK_SHOWN gallery indices [len(rows), k] of the queries `rows`, without the gallery images
    the Market-1501 protocol ignores (same identity and same camera as the query)."""
    dist = distmat[torch.as_tensor(rows, device=distmat.device)].float().cpu()  # [R, Ng]
    q_pids, q_cams = torch.as_tensor(query.pids[rows]), torch.as_tensor(query.camids[rows])
    g_pids, g_cams = torch.as_tensor(gallery.pids), torch.as_tensor(gallery.camids)
    junk = (q_pids[:, None] == g_pids[None]) & (q_cams[:, None] == g_cams[None])  # [R, Ng]
    dist = dist.masked_fill(junk, float("inf"))
    return dist.topk(min(TOPK_SHOWN, dist.shape[1]), dim=1, largest=False).indices.numpy()


def write_ranked_lists(cfg, test_set: TestSet, query: FeatureSet, gallery: FeatureSet, distmat: torch.Tensor,
                       shown: np.ndarray, path: Path) -> None:
    """A ranked-list picture of the queries `shown` (indices), with their keypoints and their top
    TOPK_SHOWN under the evaluation protocol."""
    plots.plot_ranked_lists([query.records[i].path for i in shown], query.pids[shown],
                            [r.path for r in gallery.records], gallery.pids,
                            protocol_ranking(distmat, query, gallery, shown), path,
                            topk=TOPK_SHOWN, image_hw=tuple(cfg.INPUT.SIZE_TEST),
                            query_keypoints=shown_keypoints(test_set.keypoints, query, shown),
                            keypoint_threshold=cfg.MODEL.SKT_THRES)


def write_report(cfg, test_set: TestSet, query: FeatureSet, gallery: FeatureSet, distmat: torch.Tensor,
                 query_ap: np.ndarray, record: dict, out_dir: Path) -> Path:
    """report.html in `out_dir` beside metrics.json and cmc.png: with the training curves of the
    checkpoint's run folder (copied here, when it has them) and one ranked-list picture per best / worst
    list of each visibility bucket (none without a keypoint table)."""
    figures = [("cmc.png", f"CMC, {test_set.name}")]
    curves = Path(cfg.TEST.WEIGHT).parent / CURVES_FILE
    if curves.is_file():
        if curves.resolve() != (out_dir / CURVES_FILE).resolve():
            atomic_copy(curves, out_dir / CURVES_FILE)
        figures.append((CURVES_FILE, "training: loss parts and evaluation mAP by epoch"))
    ranked = []
    if test_set.keypoints is not None:
        counts = query_visible_counts(cfg, test_set.keypoints, query)  # [Nq]
        for item in report.bucket_extremes(query_ap, counts, cfg.TEST.VIS_BUCKETS):
            file = f"ranked_{item['bucket']}_{item['which']}.png"
            write_ranked_lists(cfg, test_set, query, gallery, distmat, item["rows"], out_dir / file)
            ranked.append(dict(item, file=file, ap=query_ap[item["rows"]]))
    return report.write_page(out_dir / report.REPORT_FILE, report.evaluation_page(record, figures, ranked))


def summary_table(rows: dict[str, dict]) -> str:
    """A fixed-width table, one row per test set, values in percent."""
    cols = ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")
    width = max([len("dataset")] + [len(n) for n in rows])
    lines = [f"{'dataset':<{width}} " + " ".join(f"{c:>7}" for c in cols)]
    lines += [f"{name:<{width}} " + " ".join(f"{100 * r[c]:>7.2f}" for c in cols) for name, r in rows.items()]
    return "\n".join(lines)


def run_test(cfg) -> dict[str, dict]:
    """Evaluate TEST.WEIGHT on every test set; write outputs; print the table. Returns name -> record."""
    dist_info = init_distributed(cfg.MODEL.DEVICE)
    out_root = claim_eval_dir(cfg.OUTPUT_DIR)  # an evaluation or run folder of ours; a user's is refused
    setup_logger(out_root, dist_info.rank)
    device = dist_info.device
    eval_ckpt = read_eval_checkpoint(cfg.TEST.WEIGHT) if cfg.TEST.WEIGHT else None  # None: load_eval_model says why
    model, info = load_eval_model(cfg, cfg.TEST.WEIGHT, device, eval_ckpt)
    amp_dtype = eval_dtype(cfg, device)
    logger.info("testing %s (%s checkpoint, %d ids, %d cameras), config %s, eval %s", info["checkpoint"],
                info["format"], info["num_classes"], info["num_cameras"], config_hash(cfg), dtype_name(amp_dtype))
    for warning in (protocol_warning(cfg, info["format"]), trained_config_warning(eval_ckpt.config, cfg)):
        if warning:
            logger.warning(warning)
    checkpoint = {"path": str(cfg.TEST.WEIGHT), "sha256": sha256_file(cfg.TEST.WEIGHT), "format": info["format"]}
    test_sets = prepare_test_sets(cfg)
    # each set's folder through the output guard, before any work: a user's folder there is refused
    out_dirs = {t.name: claim_eval_dir(set_output_dir(out_root, t.name, len(test_sets))) for t in test_sets}
    rows: dict[str, dict] = {}

    def write_outputs(test_set: TestSet, metrics: dict, query: FeatureSet, gallery: FeatureSet,
                      distmat: torch.Tensor) -> None:
        out_dir = out_dirs[test_set.name]
        record = {"dataset": test_set.name, **metrics_record(metrics, query, gallery)}
        record["buckets"] = visibility_buckets(cfg, test_set.keypoints, query, gallery, distmat)
        if cfg.TEST.POSE_DEPENDENCE:
            record["pose_dependence"] = pose_dependence(model, cfg, test_set, device, heatmaps, amp_dtype, distmat)
        record["provenance"] = provenance(cfg, checkpoint, test_set.name, test_set.keypoints, device, amp_dtype)
        write_json(record, out_dir / "metrics.json")
        plots.plot_cmc(metrics["cmc"], out_dir / "cmc.png", label=test_set.name, title=f"CMC, {test_set.name}")
        if cfg.TEST.NUM_VIS > 0:
            shown = plots.shown_queries(metrics["query_ap"], cfg.TEST.NUM_VIS, cfg.TEST.VIS_ORDER)
            write_ranked_lists(cfg, test_set, query, gallery, distmat, shown, out_dir / "ranked_lists.png")
        write_report(cfg, test_set, query, gallery, distmat, metrics["query_ap"], record, out_dir)
        rows[test_set.name] = record

    heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST, evaluation=True).to(device)
    outputs_kept()  # checkpoint and test sets read: an error from here on keeps the evaluation folder
    evaluate_test_sets(model, cfg, test_sets, device, heatmaps, amp_dtype, on_result=write_outputs)
    if is_main_process():
        print(summary_table(rows), flush=True)
        for name, record in rows.items():
            if record["buckets"] is not None:
                title = f"{name} by visible keypoints (confidence >= {record['buckets']['keypoint_threshold']:g})"
                print("\n" + bucket_table(record["buckets"]["rows"], title), flush=True)
            if "pose_dependence" in record:
                title = f"{name}: mAP / Rank-1 with other keypoints (buckets: the own keypoints' visible count)"
                print("\n" + dependence_table(record["pose_dependence"], title), flush=True)
    return rows
