"""PFD's losses (docs/MODEL.md section 9), vectorized over the global entry and all parts.

For a (scores [1+P, B, C], feats [1+P, B, D]) pair, with s = GLOBAL_LOSS_SHARE (0.5):
    ID  = s * CE(s_0) + (1 - s) * mean_i CE(s_i)      (CE(s_0) alone when P = 0, the ViT baseline)
    TRI = s * T(f_0)  + (1 - s) * mean_i T(f_i)
    loss = ID_LOSS_WEIGHT * ID + TRIPLET_LOSS_WEIGHT * TRI
total = 0.5 * loss(encoder) + DECODER_LOSS_WEIGHT * loss(decoder) + PUSH_LOSS_WEIGHT * push
(loss(encoder) alone for the baseline). The defaults (0.5, 0.5, 1) are the reference's; the other
values are ablations.
All loss math runs in fp32 with autocast off.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy_per_group", "pairwise_euclidean", "batch_hard_triplet", "push_loss", "PFDLoss",
           "build_loss"]


def cross_entropy_per_group(scores: torch.Tensor, pids: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """scores [G, B, C], pids [B] -> mean CE of each group [G], all groups in one call."""
    groups, batch = scores.shape[:2]
    ce = F.cross_entropy(scores.reshape(groups * batch, -1), pids.repeat(groups), reduction="none",
                         label_smoothing=label_smoothing)  # [G*B]
    return ce.view(groups, batch).mean(dim=1)


def pairwise_euclidean(feats: torch.Tensor) -> torch.Tensor:
    """feats [G, B, D] -> Euclidean distances [G, B, B] (TransReID's clamp(1e-12).sqrt())."""
    sq = feats.pow(2).sum(dim=-1)  # [G, B]
    d2 = torch.baddbmm(sq.unsqueeze(2) + sq.unsqueeze(1), feats, feats.transpose(1, 2), alpha=-2)
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(feats: torch.Tensor, pids: torch.Tensor, margin: float | None) -> torch.Tensor:
    """Batch-hard triplet loss of each group: feats [G, B, D], pids [B] -> [G].

    Per anchor: hardest positive d_ap = max distance to a same-id sample, hardest negative
    d_an = min distance to another id. margin None: soft margin mean(log(1 + exp(d_ap - d_an)));
    else mean(max(0, d_ap - d_an + margin)).
    """
    dist = pairwise_euclidean(feats)  # [G, B, B]
    same = (pids.unsqueeze(0) == pids.unsqueeze(1)).unsqueeze(0)  # [1, B, B]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=-1)  # [G, B]
    d_an = dist.masked_fill(same, float("inf")).amin(dim=-1)  # [G, B]
    if margin is None:
        return F.softplus(d_ap - d_an).mean(dim=-1)
    return F.relu(d_ap - d_an + margin).mean(dim=-1)


def push_loss(f_h: torch.Tensor, f_l: torch.Tensor, mode: str) -> torch.Tensor:
    """Push term between f_h_bn and f_l_bn [B, D], averaged over the batch.

    paper: cos(f_h, f_l); reference: (1 - cos(f_h, f_l)) / 2.
    """
    cos = F.cosine_similarity(f_h, f_l, dim=-1)  # [B]
    if mode == "paper":
        return cos.mean()
    if mode == "reference":
        return ((1 - cos) / 2).mean()
    raise ValueError(f"MODEL.PUSH_LOSS must be reference or paper, got {mode!r}")


def _global_parts_split(per_group: torch.Tensor, global_share: float) -> torch.Tensor:
    """share * global + (1 - share) * mean(parts) for [1+P]; the global value alone when P = 0."""
    if per_group.shape[0] == 1:
        return per_group[0]
    return global_share * per_group[0] + (1 - global_share) * per_group[1:].mean()


class PFDLoss:
    """loss_fn(outputs: PFDOutput, pids [B]) -> {"total", "enc_id", "enc_tri"[, "dec_id", "dec_tri", "push"]}.

    The named parts are unweighted (for logging); "total" applies the weights of the docstring above.
    """

    def __init__(self, *, label_smoothing: float, triplet_margin: float | None, push_mode: str,
                 id_weight: float = 1.0, triplet_weight: float = 1.0, global_share: float = 0.5,
                 decoder_weight: float = 0.5, push_weight: float = 1.0):
        self.label_smoothing, self.triplet_margin, self.push_mode = label_smoothing, triplet_margin, push_mode
        self.id_weight, self.triplet_weight = id_weight, triplet_weight
        self.global_share, self.decoder_weight, self.push_weight = global_share, decoder_weight, push_weight

    def _pair(self, scores: torch.Tensor, feats: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ident = _global_parts_split(cross_entropy_per_group(scores.float(), pids, self.label_smoothing),
                                    self.global_share)
        tri = _global_parts_split(batch_hard_triplet(feats.float(), pids, self.triplet_margin), self.global_share)
        return ident, tri, self.id_weight * ident + self.triplet_weight * tri

    def __call__(self, outputs, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=pids.device.type, enabled=False):
            enc_id, enc_tri, enc = self._pair(outputs.enc_scores, outputs.enc_feats, pids)
            parts = {"enc_id": enc_id, "enc_tri": enc_tri}
            if outputs.dec_scores is None:
                return {"total": enc, **parts}
            dec_id, dec_tri, dec = self._pair(outputs.dec_scores, outputs.dec_feats, pids)
            push = push_loss(outputs.f_h_bn.float(), outputs.f_l_bn.float(), self.push_mode)
            total = 0.5 * enc + self.decoder_weight * dec + self.push_weight * push
            return {"total": total, **parts, "dec_id": dec_id, "dec_tri": dec_tri, "push": push}


def build_loss(cfg) -> PFDLoss:
    """The loss of MODEL.* (IF_LABELSMOOTH, LABEL_SMOOTH_EPS, NO_MARGIN / SOLVER.MARGIN, PUSH_LOSS, weights).
    MODEL.DISENTANGLE false turns the push loss off: there is no occluded feature f_l to push away."""
    if cfg.MODEL.METRIC_LOSS_TYPE != "triplet" or cfg.MODEL.ID_LOSS_TYPE != "softmax":
        raise ValueError(f"MODEL.METRIC_LOSS_TYPE={cfg.MODEL.METRIC_LOSS_TYPE!r} / MODEL.ID_LOSS_TYPE="
                         f"{cfg.MODEL.ID_LOSS_TYPE!r}: only triplet / softmax are implemented (the PFD recipe)")
    if not 0.0 <= cfg.MODEL.GLOBAL_LOSS_SHARE <= 1.0:
        raise ValueError(f"MODEL.GLOBAL_LOSS_SHARE={cfg.MODEL.GLOBAL_LOSS_SHARE}: expected a share in [0, 1]")
    for key in ("DECODER_LOSS_WEIGHT", "PUSH_LOSS_WEIGHT"):
        if cfg.MODEL[key] < 0:
            raise ValueError(f"MODEL.{key}={cfg.MODEL[key]}: expected a weight >= 0")
    smoothing = cfg.MODEL.LABEL_SMOOTH_EPS if cfg.MODEL.IF_LABELSMOOTH == "on" else 0.0
    return PFDLoss(label_smoothing=smoothing, triplet_margin=None if cfg.MODEL.NO_MARGIN else cfg.SOLVER.MARGIN,
                   push_mode=cfg.MODEL.PUSH_LOSS, id_weight=cfg.MODEL.ID_LOSS_WEIGHT,
                   triplet_weight=cfg.MODEL.TRIPLET_LOSS_WEIGHT, global_share=cfg.MODEL.GLOBAL_LOSS_SHARE,
                   decoder_weight=cfg.MODEL.DECODER_LOSS_WEIGHT,
                   push_weight=cfg.MODEL.PUSH_LOSS_WEIGHT if cfg.MODEL.DISENTANGLE else 0.0)
