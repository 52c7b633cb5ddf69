"""Losses against naive per-anchor / per-part computations and the spec's weighting."""
import math

import pytest
import torch
import torch.nn.functional as F

from pfd.config import load_config
from pfd.model import PFDOutput, build_loss
from pfd.model.losses import PFDLoss, batch_hard_triplet, cross_entropy_per_group, push_loss

B, D, C = 8, 16, 5
PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def naive_triplet(x, pids, margin):
    """One anchor at a time, with TransReID's distance."""
    losses = []
    for a in range(x.shape[0]):
        d = [math.sqrt(max(float(((x[a] - x[j]) ** 2).sum()), 1e-12)) for j in range(x.shape[0])]
        d_ap = max(d[j] for j in range(len(d)) if pids[j] == pids[a])
        d_an = min(d[j] for j in range(len(d)) if pids[j] != pids[a])
        losses.append(math.log1p(math.exp(d_ap - d_an)) if margin is None else max(0.0, d_ap - d_an + margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin", [None, 0.3])
def test_batch_hard_triplet_equals_naive(margin):
    torch.manual_seed(0)
    feats = torch.randn(3, B, D)
    got = batch_hard_triplet(feats, PIDS, margin)
    assert got.shape == (3,)
    for g in range(3):
        assert got[g].item() == pytest.approx(naive_triplet(feats[g], PIDS, margin), rel=1e-5, abs=1e-6)


def test_cross_entropy_per_group_and_label_smoothing():
    torch.manual_seed(1)
    scores = torch.randn(4, B, C)
    got = cross_entropy_per_group(scores, PIDS, 0.1)
    for g in range(4):
        logp = scores[g].log_softmax(-1)
        target = torch.full((B, C), 0.1 / C)
        target[torch.arange(B), PIDS] += 0.9
        assert got[g].item() == pytest.approx(float(-(target * logp).sum(-1).mean()), rel=1e-5)


def test_push_loss_variants():
    f_h = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    f_l = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # cos = 0 and 1
    assert push_loss(f_h, f_l, "paper").item() == pytest.approx(0.5)
    assert push_loss(f_h, f_l, "reference").item() == pytest.approx((0.5 + 0.0) / 2)
    with pytest.raises(ValueError, match="PUSH_LOSS"):
        push_loss(f_h, f_l, "other")


def _outputs(num_parts=3):
    torch.manual_seed(2)
    return PFDOutput(enc_scores=torch.randn(1 + num_parts, B, C), enc_feats=torch.randn(1 + num_parts, B, D),
                     dec_scores=torch.randn(1 + num_parts, B, C), dec_feats=torch.randn(1 + num_parts, B, D),
                     f_h_bn=torch.randn(B, D), f_l_bn=torch.randn(B, D))


def test_total_is_the_spec_weighting():
    cfg = load_config(None, ["MODEL.ID_LOSS_WEIGHT", "0.7", "MODEL.TRIPLET_LOSS_WEIGHT", "1.3"])
    out = _outputs()
    parts = build_loss(cfg)(out, PIDS)

    def pair(scores, feats):
        ce = [F.cross_entropy(s, PIDS, label_smoothing=0.1) for s in scores]
        tri = [naive_triplet(f, PIDS, None) for f in feats]
        ident = 0.5 * ce[0] + 0.5 * sum(ce[1:]) / len(ce[1:])
        trip = 0.5 * tri[0] + 0.5 * sum(tri[1:]) / len(tri[1:])
        return ident, trip

    e_id, e_tri = pair(out.enc_scores, out.enc_feats)
    d_id, d_tri = pair(out.dec_scores, out.dec_feats)
    push = ((1 - F.cosine_similarity(out.f_h_bn, out.f_l_bn)) / 2).mean()
    expected = 0.5 * (0.7 * e_id + 1.3 * e_tri) + 0.5 * (0.7 * d_id + 1.3 * d_tri) + push
    assert parts["total"].item() == pytest.approx(float(expected), rel=1e-5)
    for name, value in [("enc_id", e_id), ("enc_tri", e_tri), ("dec_id", d_id), ("dec_tri", d_tri), ("push", push)]:
        assert parts[name].item() == pytest.approx(float(value), rel=1e-5), name


def test_config_switches_margin_smoothing_and_push():
    cfg = load_config(None, ["MODEL.NO_MARGIN", "false", "SOLVER.MARGIN", "0.5", "MODEL.IF_LABELSMOOTH", "off",
                             "MODEL.PUSH_LOSS", "paper"])
    loss = build_loss(cfg)
    assert (loss.triplet_margin, loss.label_smoothing, loss.push_mode) == (0.5, 0.0, "paper")
    assert build_loss(load_config(None, [])).triplet_margin is None


def test_baseline_outputs_use_plain_id_plus_triplet():
    out = _outputs(num_parts=0)
    out = PFDOutput(enc_scores=out.enc_scores, enc_feats=out.enc_feats)
    parts = PFDLoss(label_smoothing=0.1, triplet_margin=None, push_mode="reference")(out, PIDS)
    assert set(parts) == {"total", "enc_id", "enc_tri"}
    ce = F.cross_entropy(out.enc_scores[0], PIDS, label_smoothing=0.1)
    assert parts["total"].item() == pytest.approx(float(ce) + naive_triplet(out.enc_feats[0], PIDS, None), rel=1e-5)


def test_loss_is_fp32_under_autocast():
    out = _outputs()
    out.enc_scores, out.dec_scores = out.enc_scores.bfloat16(), out.dec_scores.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = build_loss(load_config(None, []))(out, PIDS)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in parts.values())
