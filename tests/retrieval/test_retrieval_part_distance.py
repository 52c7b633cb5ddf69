"""TEST.PART_DISTANCE visible (pfd.retrieval.part_distance): parts compared only where both images show them."""
import pytest
import torch
import torch.nn.functional as F

from pfd.config import ConfigError
from pfd.engine.evaluator import extract_features, prepare_test_sets
from pfd.model import build_model
from pfd.pose.heatmap_maker import HeatmapMaker
from pfd.retrieval import distance_matrix, evaluate_features
from pfd.retrieval.part_distance import PartLayout, visible_part_distance

from engine_tiny import tiny_config

LAYOUT = PartLayout(start=3, count=4, dim=5)  # [rest 3 | 4 parts of 5 | rest 2] = 25 values


def features(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 25, generator=g)
    hidden = torch.rand(n, 4, generator=g) < 0.4
    hidden[0] = True  # the first image shows no part at all
    parts = x[:, 3:23].view(n, 4, 5)
    parts[hidden] = 0
    return x


def naive(q: torch.Tensor, g: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    out = torch.empty(len(q), len(g))
    for i, a in enumerate(q):
        for j, b in enumerate(g):
            d_rest = 2 - 2 * F.cosine_similarity(torch.cat([a[:3], a[23:]]), torch.cat([b[:3], b[23:]]), dim=0)
            shared = [k for k in range(4) if a[3 + 5 * k:8 + 5 * k].any() and b[3 + 5 * k:8 + 5 * k].any()]
            if not shared:
                out[i, j] = d_rest
                continue
            cos = [F.cosine_similarity(a[3 + 5 * k:8 + 5 * k], b[3 + 5 * k:8 + 5 * k], dim=0) for k in shared]
            out[i, j] = (d_rest + weight * (2 - 2 * torch.stack(cos).mean())) / (1 + weight)
    return out


def test_visible_part_distance_equals_the_per_pair_definition():
    q, g = features(6, 0), features(9, 1)
    expected = naive(q, g)
    assert torch.allclose(visible_part_distance(q, g, LAYOUT), expected, atol=1e-5)
    assert torch.allclose(distance_matrix(q, g, part_layout=LAYOUT), expected, atol=1e-5)
    light = LAYOUT._replace(weight=0.25)  # TEST.PART_WEIGHT
    assert torch.allclose(visible_part_distance(q, g, light), naive(q, g, 0.25), atol=1e-5)
    # the image without parts is compared on the other blocks alone
    rest = lambda x: torch.cat([x[:, :3], x[:, 23:]], 1)  # noqa: E731
    assert torch.allclose(visible_part_distance(q[:1], g, LAYOUT), distance_matrix(rest(q[:1]), rest(g)), atol=1e-5)


def test_a_hidden_part_changes_nothing_however_different_it_would_have_been():
    q, g = features(4, 2), features(5, 3)
    g_hidden = g.clone()
    g_hidden[:, 3:8] = 0  # part 0 hidden in the whole gallery
    q_other = q.clone()
    q_other[:, 3:8] = torch.randn(4, 5)  # the query's part 0 then never matters
    assert torch.allclose(visible_part_distance(q, g_hidden, LAYOUT), visible_part_distance(q_other, g_hidden, LAYOUT))


def test_evaluation_reranks_on_the_same_distance():
    q, g = features(6, 4), features(9, 5)
    pids_q, pids_g = torch.arange(6) % 3, torch.arange(9) % 3
    cams_q, cams_g = torch.zeros(6, dtype=torch.long), torch.ones(9, dtype=torch.long)
    _, plain = evaluate_features(q, g, pids_q, pids_g, cams_q, cams_g, part_layout=LAYOUT)
    assert torch.allclose(plain, naive(q, g), atol=1e-5)
    _, reranked = evaluate_features(q, g, pids_q, pids_g, cams_q, cams_g, part_layout=LAYOUT, rerank=(3, 2, 0.3))
    assert not torch.allclose(reranked, plain)


def test_a_model_without_part_features_is_refused(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path, "MODEL.NAME", "vit_baseline", "TEST.PART_DISTANCE", "visible")
    model = build_model(cfg, 16, 6, load_pretrained=False).eval()
    records = prepare_test_sets(cfg)[0].dataset.query[:2]
    with pytest.raises(ConfigError, match="TEST.PART_DISTANCE visible.*vit_baseline"):
        extract_features(model, cfg, records, None, torch.device("cpu"), HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST), None)


def test_pfd_features_carry_their_part_layout(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path, "MODEL.PART_POOL", "pose", "TEST.PART_DISTANCE", "visible",
                      "TEST.PART_WEIGHT", "0.5")
    model = build_model(cfg, 16, 6, load_pretrained=False).eval()
    test_set = prepare_test_sets(cfg)[0]
    feats = extract_features(model, cfg, test_set.dataset.query[:3], test_set.keypoints, torch.device("cpu"),
                             HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST), None)
    assert feats.part_layout == (model.embed_dim, 17, model.embed_dim, 0.5)


def test_query_blocks_give_the_whole_matrix():
    q, g = features(7, 6), features(9, 7)
    whole = visible_part_distance(q, g, LAYOUT)
    assert torch.allclose(visible_part_distance(q, g, LAYOUT, block_rows=3), whole)
