"""pfa / pvm / disentangle and the stacked heads equal naive per-sample loops (the reference's own way)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pfd.model.parts import PartBNNecks, PartClassifiers, disentangle, heat_weight, keypoint_visibility, pfa, pvm

B, K, D = 6, 17, 32


def naive_pfa(L, P):
    out = []
    for b in range(L.shape[0]):
        pw = L[b] * P[b]
        rows = []
        for i in range(L.shape[1]):
            sims = torch.stack([F.cosine_similarity(L[b, i], pw[j], dim=0) for j in range(L.shape[1])])
            rows.append(L[b, i] + pw[int(sims.argmax())])
        out.append(torch.stack(rows))
    return torch.stack(out)


def naive_pvm(A, V, mode):
    outs, matches = [], []
    for b in range(A.shape[0]):
        rows, m = [], []
        for j in range(V.shape[1]):
            if mode == "paper":
                sims = torch.stack([F.cosine_similarity(V[b, j], A[b, k], dim=0) for k in range(A.shape[1])])
            else:  # reference: keypoint j picks a view, which then indexes A
                sims = torch.stack([F.cosine_similarity(A[b, j], V[b, q], dim=0) for q in range(V.shape[1])])
            idx = int(sims.argmax())
            rows.append(V[b, j] + A[b, idx])
            m.append(idx)
        outs.append(torch.stack(rows))
        matches.append(torch.tensor(m))
    return torch.stack(outs), torch.stack(matches)


def naive_disentangle(O, m, v):
    f_h, f_l, packed = [], [], []
    for b in range(O.shape[0]):
        vis = [O[b, j] for j in range(O.shape[1]) if v[b, m[b, j]]]
        inv = [O[b, j] for j in range(O.shape[1]) if not v[b, m[b, j]]]
        f_l.append(torch.stack(inv).mean(0) if inv else torch.zeros(O.shape[2]))
        h = torch.stack(vis).mean(0) if vis else O[b].mean(0)
        f_h.append(h)
        rows = vis if vis else [h]
        packed.append(torch.cat([torch.stack(rows), torch.zeros(O.shape[1] - len(rows), O.shape[2])]))
    return torch.stack(f_h), torch.stack(f_l), torch.stack(packed)


def visibility_cases(nq_batch=B):
    """Sample 0 all visible, sample 1 none visible, the rest mixed."""
    v = torch.rand(nq_batch, K) > 0.5
    v[0], v[1] = True, False
    return v


def test_pfa_equals_loop():
    torch.manual_seed(0)
    L, P = torch.randn(B, K, D), torch.randn(B, K, D)
    torch.testing.assert_close(pfa(L, P), naive_pfa(L, P))


@pytest.mark.parametrize("mode,nq", [("reference", K), ("paper", K), ("paper", 5)])
def test_pvm_equals_loop(mode, nq):
    torch.manual_seed(1)
    A, V = torch.randn(B, K, D), torch.randn(B, nq, D)
    O, m = pvm(A, V, mode)
    O_ref, m_ref = naive_pvm(A, V, mode)
    assert torch.equal(m, m_ref)
    torch.testing.assert_close(O, O_ref)


def test_pvm_reference_needs_as_many_views_as_keypoints():
    with pytest.raises(ValueError, match="PVM_MODE paper"):
        pvm(torch.randn(2, K, D), torch.randn(2, 5, D), "reference")


@pytest.mark.parametrize("nq", [K, 7])
def test_disentangle_equals_loop(nq):
    torch.manual_seed(2)
    O = torch.randn(B, nq, D)
    m = torch.randint(0, K, (B, nq))
    v = visibility_cases()
    f_h, f_l, packed = disentangle(O, m, v)
    r_h, r_l, r_p = naive_disentangle(O, m, v)
    torch.testing.assert_close(f_h, r_h)
    torch.testing.assert_close(f_l, r_l)
    torch.testing.assert_close(packed, r_p)
    assert torch.all(f_l[0] == 0)  # all visible: no low-confidence part
    torch.testing.assert_close(packed[1, 0], O[1].mean(0))  # none visible: f_h then zeros
    assert torch.all(packed[1, 1:] == 0)


def test_chain_on_pvm_matches_with_autograd():
    """The whole chain runs on pvm's own matches and passes gradients to every input."""
    torch.manual_seed(3)
    L, P, V = (torch.randn(B, K, D, requires_grad=True) for _ in range(3))
    v = visibility_cases()
    O, m = pvm(pfa(L, P), V, "reference")
    f_h, f_l, packed = disentangle(O, m, v)
    r_h, r_l, r_p = naive_disentangle(*naive_pvm(naive_pfa(L, P), V, "reference"), v)
    torch.testing.assert_close(packed, r_p)
    (f_h.sum() + f_l.sum() + packed.sum()).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (L, P, V))


def test_heat_weight_and_visibility():
    torch.manual_seed(4)
    heat = torch.rand(B, K, 8 * 4) * 0.5  # [B, K, h*w], h*w=32 < D: overlapping adaptive bins
    a = heat_weight(heat, D)
    torch.testing.assert_close(a, nn.AdaptiveAvgPool2d((1, D))(heat))
    # bin i of the h*w axis: [floor(i*hw/D), ceil((i+1)*hw/D)) averaged, then mean over keypoints
    hw = heat.shape[-1]
    i = 5
    lo, hi = (i * hw) // D, -((-(i + 1) * hw) // D)
    torch.testing.assert_close(a[:, 0, i], heat[:, :, lo:hi].mean(dim=(1, 2)))
    v = keypoint_visibility(heat, 0.3)
    assert torch.equal(v, heat.max(dim=-1).values >= 0.3)


def test_part_bnnecks_equal_separate_batchnorms():
    torch.manual_seed(5)
    P = 4
    stacked = PartBNNecks(P, D)
    separate = [nn.BatchNorm1d(D) for _ in range(P)]
    with torch.no_grad():
        stacked.weight.uniform_(0.5, 1.5)
        for p, bn in enumerate(separate):
            bn.weight.copy_(stacked.weight[p * D:(p + 1) * D])
            bn.bias.zero_()
    x = torch.randn(B, P, D) * 3 + 1
    for mode in ("train", "eval"):
        getattr(stacked, mode)()
        for bn in separate:
            getattr(bn, mode)()
        expected = torch.stack([bn(x[:, p]) for p, bn in enumerate(separate)], dim=1)
        torch.testing.assert_close(stacked(x), expected)
    assert not stacked.bias.requires_grad and torch.all(stacked.bias == 0)
    torch.testing.assert_close(stacked.running_mean.view(P, D), torch.stack([bn.running_mean for bn in separate]))


def test_part_classifiers_equal_separate_linears():
    torch.manual_seed(6)
    P, C = 3, 11
    heads = PartClassifiers(P, D, C)
    x = torch.randn(B, P, D)
    scores = heads(x)
    assert scores.shape == (P, B, C)
    for p in range(P):
        torch.testing.assert_close(scores[p], F.linear(x[:, p], heads.weight[p]))
    assert heads.weight.std() < 0.01  # N(0, 0.001) init
