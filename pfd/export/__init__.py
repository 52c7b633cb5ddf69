"""ONNX export of the eval-mode model, checked with onnxruntime before it is written.

    python -m pfd.export --weights W [--config C] --out model.onnx [KEY VALUE ...]

The graph maps `images` [B, 3, H, W] (normalized with INPUT.PIXEL_MEAN/STD, H x W = INPUT.SIZE_TEST),
`heatmaps` [B, 17, H/4, W/4] (pfd.pose.heatmaps.render_heatmaps of the keypoints) and `camids` [B]
int64 to `features` [B, F], the inference feature before the L2 normalization retrieval applies; the
batch axis is dynamic. PFA's and PVM's argmax matchings and the visibility packing are in the graph.
Every model has the three inputs; the ViT baseline ignores `heatmaps`, a model without a camera
embedding ignores `camids`.

Export uses the torch.export-based exporter (`torch.onnx.export(..., dynamo=True)`, needs onnxscript).
The file is written to a temp name, run with onnxruntime on batches of other sizes than the traced one
(samples with every keypoint visible, none, and a mix), and moved into place only when the largest
per-sample relative L2 difference to PyTorch is within `tolerance`. `--out` is new or an ONNX file pfd
exported earlier (its metadata_props hold `pfd.exporter`); any other file there is refused (pfd.io's guard).

Near ties: PFA and PVM pick an index by argmax of cosine similarities. When the best and second-best
similarity of a sample are closer than TIE_MARGIN (a trained model whose decoder views nearly coincide
has such ties on every input), float rounding decides, and onnxruntime may legitimately pick the other
index, which changes the decoder part of the feature. For those samples only the matching-free leading
part ([g_bn, l_i_bn], `PFD.matching_free_dim`) is compared; the report counts them.
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..io import atomic_path, claim_output_file
from ..model.parts import cosine_matrix, pfa
from ..pose.heatmaps import render_heatmaps
from ..pose.keypoints import NUM_KEYPOINTS

__all__ = ["ExportCheckError", "claim_onnx_path", "example_inputs", "export_onnx", "is_pfd_onnx", "matching_margins",
           "onnx_features"]

logger = logging.getLogger("pfd")
INPUT_NAMES = ("images", "heatmaps", "camids")
TRACE_BATCH = 2
CHECK_BATCHES = (1, 3, 5)
TOLERANCE = 1e-4
TIE_MARGIN = 1e-5  # similarity gap under which an argmax matching is a near tie (float32 rounding of a
# cosine is about 1e-7 to 1e-6 here; the features of onnxruntime and PyTorch differ by about 1e-6)


METADATA_KEY = "pfd.exporter"  # metadata_props entry of every file pfd exports: "pfd <version>"


def is_pfd_onnx(path: str | Path) -> bool:
    """True when `path` is an ONNX model whose metadata says pfd exported it (so --out may replace it)."""
    import onnx  # only when an --out file exists
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), format="protobuf", load_external_data=False)  # whatever the name ends with
    except (OSError, DecodeError, ValueError):
        return False
    return any(p.key == METADATA_KEY and p.value.startswith("pfd") for p in proto.metadata_props)


def claim_onnx_path(out: str | Path) -> Path:
    """`out` if an export may write it (pfd.io.claim_output_file): new, or an ONNX file pfd exported."""
    return claim_output_file(out, is_pfd_onnx, what="model file (ONNX)",
                             hint="choose another --out (an ONNX file pfd exported may be replaced)")


class ExportCheckError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model within the tolerance."""


def example_inputs(batch: int, input_hw: Sequence[int], sigma: float, num_cameras: int, threshold: float = 0.3,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [B, 3, H, W], heatmaps [B, 17, H/4, W/4], camids [B]) with random content: sample 0 has every
    keypoint visible (peak 0.9), sample 1 none (peaks 0.9 x the visibility `threshold`, MODEL.SKT_THRES),
    the others random confidences in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    h, w = input_hw
    images = torch.randn(batch, 3, h, w, generator=g)
    xy = torch.rand(batch, NUM_KEYPOINTS, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    conf = torch.rand(batch, NUM_KEYPOINTS, 1, generator=g)
    conf[0], conf[1:2] = 0.9, 0.9 * threshold
    heatmaps = render_heatmaps(torch.cat([xy, conf], dim=-1), (h, w), sigma)  # [B, 17, H/4, W/4]
    camids = torch.arange(batch) % max(1, num_cameras)
    return images, heatmaps, camids


def onnx_features(session, images: torch.Tensor, heatmaps: torch.Tensor, camids: torch.Tensor) -> np.ndarray:
    """features [B, F] of an onnxruntime session of an exported model."""
    return session.run(None, dict(zip(INPUT_NAMES, (images.numpy(), heatmaps.numpy(), camids.numpy()))))[0]


def _threshold(model: nn.Module) -> float:
    """PFD's keypoint visibility threshold (MODEL.SKT_THRES); the baseline has none (its heatmaps are unused)."""
    return float(getattr(model, "visibility_threshold", 0.3))


def _top2_gap(similarity: torch.Tensor) -> torch.Tensor:
    """[B] smallest gap between the best and second-best entry of any row of similarity [B, R, C]."""
    top2 = similarity.topk(2, dim=-1).values  # [B, R, 2]
    return (top2[..., 0] - top2[..., 1]).amin(dim=-1)


def matching_margins(model: nn.Module, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode features [B, F] and, per sample, the smallest similarity gap of PFA's and PVM's argmax
    matchings [B] (inf for a model or feature without matchings: the ViT baseline, FEAT_KIND global).

    The matchings' inputs are read with forward hooks (P from pose_decoder_linear, L from part_features, V
    from the decoder) and their similarities recomputed with pfd.model.parts' own functions.
    """
    seen: dict[str, torch.Tensor] = {}
    modules = {"P": getattr(model, "pose_decoder_linear", None), "V": getattr(model, "decoder", None),
               "L": getattr(model, "part_features", None)}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
             for name, m in modules.items() if m is not None]
    try:
        with torch.no_grad():
            features = model(*inputs)  # [B, F]
    finally:
        for hook in hooks:
            hook.remove()
    margins = torch.full((features.shape[0],), float("inf"))
    if not {"P", "L", "V"} <= seen.keys():
        return features, margins
    local, views = seen["L"], seen["V"]  # L [B, K, D], V [B, Nq, D]
    aligned = local
    if model.use_pfa:
        margins = torch.minimum(margins, _top2_gap(cosine_matrix(local, local * seen["P"])))
        aligned = pfa(local, seen["P"])  # A [B, K, D]
    if model.use_pvm:
        pairs = (views, aligned) if model.pvm_mode == "paper" else (aligned, views)
        margins = torch.minimum(margins, _top2_gap(cosine_matrix(*pairs)))
    return features, margins


def _compare(model: nn.Module, path: Path, input_hw, sigma: float, num_cameras: int) -> tuple[float, int, int]:
    """(largest per-sample ||onnx - torch|| / ||torch||, near-tie samples, samples) over the CHECK_BATCHES;
    near-tie samples are compared on their matching-free leading values only."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    free = getattr(model, "matching_free_dim", model.feature_dim)
    worst, ties = 0.0, 0
    for i, batch in enumerate(CHECK_BATCHES):
        inputs = example_inputs(batch, input_hw, sigma, num_cameras, _threshold(model), seed=1 + i)
        expected, margins = matching_margins(model, inputs)  # [B, F], [B]
        got = torch.from_numpy(onnx_features(session, *inputs))
        if got.shape != expected.shape:
            raise ExportCheckError(f"{path}: onnxruntime returned shape {list(got.shape)} for a batch of {batch}, "
                                   f"PyTorch {list(expected.shape)}")
        tied = margins < TIE_MARGIN  # [B]
        width = torch.where(tied, free, expected.shape[1])  # [B] values compared per sample
        mask = torch.arange(expected.shape[1]) < width[:, None]  # [B, F]
        error = ((got - expected) * mask).norm(dim=1) / (expected * mask).norm(dim=1).clamp(min=1e-12)  # [B]
        worst, ties = max(worst, float(error.max())), ties + int(tied.sum())
    return worst, ties, sum(CHECK_BATCHES)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence two benign exporter messages: the shared batch axis "will not be used" under a second name,
    and onnxscript's optimizer skipping constant folding of Split nodes."""
    onnxscript_logger = logging.getLogger("onnxscript")
    level = onnxscript_logger.level
    onnxscript_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used")
            yield
    finally:
        onnxscript_logger.setLevel(level)


def export_onnx(model: nn.Module, out: str | Path, input_hw: Sequence[int], sigma: float, num_cameras: int,
                tolerance: float = TOLERANCE) -> dict:
    """Export `model` (moved to CPU, eval mode, fp32) to `out` and check it; returns
    {"path", "relative_difference", "near_ties", "samples", "export_seconds", "opset", "feature_dim"}
    (near_ties: checked samples compared on their matching-free values only, see the module docstring).

    Raises ExportCheckError (and writes nothing) when onnxruntime differs from PyTorch by more than `tolerance`.
    """
    out = claim_onnx_path(out)
    model = model.cpu().float().eval()
    args = example_inputs(TRACE_BATCH, input_hw, sigma, num_cameras, _threshold(model))
    batch = torch.export.Dim("batch", min=1, max=4096)
    start = time.perf_counter()
    with _quiet_exporter():
        program = torch.onnx.export(model, args, input_names=list(INPUT_NAMES), output_names=["features"],
                                    dynamic_shapes=({0: batch}, {0: batch}, {0: batch}), dynamo=True, verbose=False)
    program.model.metadata_props[METADATA_KEY] = f"pfd {__version__}"  # is_pfd_onnx: a later export may replace it
    with atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)
        seconds = time.perf_counter() - start
        difference, ties, samples = _compare(model, tmp, input_hw, sigma, num_cameras)
        if not difference <= tolerance:
            raise ExportCheckError(f"{out}: onnxruntime differs from PyTorch by {difference:.3g} (relative L2, "
                                   f"worst sample), more than the tolerance {tolerance:g}; nothing was written")
    opset = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"path": str(out), "relative_difference": difference, "near_ties": ties, "samples": samples,
            "export_seconds": seconds, "opset": opset, "feature_dim": int(model.feature_dim)}
