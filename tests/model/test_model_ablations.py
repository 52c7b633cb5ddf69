"""Ablation switches (MODEL.HEAT_WEIGHT, PFA, PVM, DISENTANGLE and the loss weights): each one changes
what it names and nothing when left at its default."""
import pytest
import torch
import torch.nn.functional as F
from test_model_pfd import CAMS, CLASSES, tiny_batch, tiny_cfg

from pfd.model import PFDOutput, build_loss, build_model
from pfd.model.parts import pose_pool
from pfd.model.pfd import PFD


def train_outputs(*opts, heat=None) -> PFDOutput:
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*opts), CLASSES, CAMS).train()
    images, default_heat, cams, _ = tiny_batch()
    torch.manual_seed(1)  # same dropout draws in every call
    return model(images, default_heat if heat is None else heat, cams)


def test_defaults_equal_the_switches_on():
    a = train_outputs()
    b = train_outputs("MODEL.HEAT_WEIGHT", "true", "MODEL.PFA", "true", "MODEL.PVM", "true",
                      "MODEL.DISENTANGLE", "true")
    for name in ("enc_scores", "enc_feats", "dec_scores", "dec_feats", "f_h_bn", "f_l_bn"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_heat_weight_off_makes_the_global_feature_ignore_the_heatmaps():
    heat = tiny_batch()[1]
    other = torch.rand_like(heat)
    on = train_outputs(heat=heat).enc_feats[0], train_outputs(heat=other).enc_feats[0]
    off = train_outputs("MODEL.HEAT_WEIGHT", "false", heat=heat), train_outputs("MODEL.HEAT_WEIGHT", "false",
                                                                                heat=other)
    assert not torch.allclose(*on)  # g = cls * a + cls depends on the heatmaps
    assert torch.equal(off[0].enc_feats[0], off[1].enc_feats[0])  # g = cls
    assert not torch.allclose(off[0].dec_feats, off[1].dec_feats)  # the decoder still sees the pose


@pytest.mark.parametrize("key", ["MODEL.PFA", "MODEL.PVM"])
def test_pfa_and_pvm_switches_change_only_the_decoder_side(key):
    on, off = train_outputs(), train_outputs(key, "false")
    assert torch.equal(on.enc_feats, off.enc_feats) and torch.equal(on.enc_scores, off.enc_scores)
    assert not torch.allclose(on.dec_feats, off.dec_feats)


def test_pvm_off_needs_one_view_per_keypoint():
    with pytest.raises(ValueError, match="MODEL.PVM false.*QUERY_NUM=17"):
        build_model(tiny_cfg("MODEL.PVM", "false", "MODEL.PVM_MODE", "paper", "MODEL.QUERY_NUM", "8"), CLASSES, CAMS)


def test_disentangle_off_treats_every_output_as_visible():
    on, off = train_outputs(), train_outputs("MODEL.DISENTANGLE", "false")
    assert on.f_l_bn.abs().sum() > 0
    assert torch.equal(off.f_l_bn, torch.zeros_like(off.f_l_bn))  # nothing set apart as occluded
    # f_h (before its BNNeck) is then the mean of all outputs: Dp holds all of them in order.
    parts = off.dec_feats[1:]  # [Nq, B, D]
    assert (parts.abs().sum(-1) > 0).all()


def test_loss_weights():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = PFDOutput(enc_scores=torch.randn(18, 8, 4, generator=g), enc_feats=torch.randn(18, 8, 16, generator=g),
                    dec_scores=torch.randn(18, 8, 4, generator=g), dec_feats=torch.randn(18, 8, 16, generator=g),
                    f_h_bn=torch.randn(8, 16, generator=g), f_l_bn=torch.randn(8, 16, generator=g))
    ref = build_loss(tiny_cfg())(out, pids)
    only_global = build_loss(tiny_cfg("MODEL.GLOBAL_LOSS_SHARE", "1.0"))(out, pids)
    ce_global = F.cross_entropy(out.enc_scores[0], pids, label_smoothing=0.1)
    assert only_global["enc_id"] == pytest.approx(float(ce_global), rel=1e-5)
    no_decoder = build_loss(tiny_cfg("MODEL.DECODER_LOSS_WEIGHT", "0", "MODEL.PUSH_LOSS_WEIGHT", "0"))(out, pids)
    enc = ref["enc_id"] + ref["enc_tri"]
    assert float(no_decoder["total"]) == pytest.approx(float(0.5 * enc), rel=1e-6)
    assert float(ref["total"]) == pytest.approx(float(0.5 * enc + 0.5 * (ref["dec_id"] + ref["dec_tri"])
                                                      + ref["push"]), rel=1e-6)
    for opts, match in ((("MODEL.GLOBAL_LOSS_SHARE", "1.5"), "GLOBAL_LOSS_SHARE=1.5"),
                        (("MODEL.DECODER_LOSS_WEIGHT", "-1"), "DECODER_LOSS_WEIGHT=-1")):
        with pytest.raises(ValueError, match=match):
            build_loss(tiny_cfg(*opts))


def test_pose_pool_takes_the_tokens_under_each_keypoint_and_the_cls_token_for_hidden_ones():
    b, d, grid = 2, 8, (4, 2)
    tokens = torch.randn(b, 1 + 8, d)
    heat = torch.zeros(b, 17, 16, 8)  # heatmaps at 4x the token grid
    heat[:, 0, 4:8, 4:8] = 1.0  # keypoint 0 on token (1, 1), row-major index 3
    heat[:, 1, 0:4, 0:4], heat[:, 1, 12:16, 0:4] = 1.0, 1.0  # keypoint 1 spread over tokens 0 and 6
    visible = torch.zeros(b, 17, dtype=torch.bool)
    visible[:, :2] = True
    parts = pose_pool(tokens, heat, grid, visible)  # [B, 17, D]
    assert torch.allclose(parts[:, 0], tokens[:, 1 + 3])
    assert torch.allclose(parts[:, 1], (tokens[:, 1 + 0] + tokens[:, 1 + 6]) / 2)
    assert torch.equal(parts[:, 2:], tokens[:, :1].expand(b, 15, d))


def test_part_pool_pose_zeroes_the_hidden_parts_of_the_eval_feature_and_trains():
    images, heat, cams, pids = tiny_batch()
    heat[0, :5] = 0  # the first image's head is hidden
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.PART_POOL", "pose"), CLASSES, CAMS)
    out = model.train()(images, heat, cams)
    build_loss(tiny_cfg())(out, pids)["total"].backward()
    assert model.b2[0].attn.qkv.weight.grad.abs().sum() > 0  # the pooled parts train b2
    feats = model.eval()(images, heat, cams)
    d, k = model.embed_dim, model.num_keypoints
    parts = feats[:, d:(1 + k) * d].view(len(images), k, d)
    visible = heat.flatten(2).amax(-1) >= model.visibility_threshold  # [B, K]
    assert (parts[~visible].abs().sum(-1) == 0).all() and (parts[visible].abs().sum(-1) > 0).all()
    assert not visible[0, :5].any() and visible[1:, :5].any()
    with pytest.raises(ValueError, match="PART_POOL must be cls or pose"):
        PFD(model.base_vit, CLASSES, input_size=(128, 64), part_pool="tokens")
