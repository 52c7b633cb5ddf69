"""The PFD model and the ViT baseline: shapes, parameter layout, a training step, eval features."""
import json
import math

import pytest
import torch

from pfd.config import load_config
from pfd.model import PFDOutput, build_loss, build_model
from pfd.model.convert import REFERENCE_UNUSED, convert_reference_pfd

TINY = ["MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "2", "MODEL.PRETRAIN_CHOICE", "none",
        "MODEL.NUM_HEAD", "4", "MODEL.DECODER_FFN_DIM", "64", "INPUT.SIZE_TRAIN", "[128, 64]",
        "INPUT.SIZE_TEST", "[128, 64]"]
B, CLASSES, CAMS = 8, 4, 3
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def tiny_cfg(*opts):
    return load_config(None, TINY + list(opts))


def tiny_batch(seed=0):
    """Images, heatmaps [B,17,32,16] with sample 0 fully visible, sample 1 not at all, the rest mixed."""
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(B, 17, 32, 16, generator=g) * 0.25
    peaks = torch.where(torch.rand(B, 17, generator=g) > 0.5, 0.9, 0.1)
    peaks[0], peaks[1] = 0.9, 0.1
    heat[:, :, 10, 5] = peaks
    return (torch.randn(B, 3, 128, 64, generator=g), heat, torch.arange(B) % CAMS,
            torch.arange(B) // 2 % CLASSES)


def test_training_step_updates_every_used_parameter_and_is_finite_under_bf16():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), CLASSES, CAMS).train()
    loss_fn = build_loss(tiny_cfg())
    images, heat, cams, pids = tiny_batch()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # Unused by the reference forward (source of b2 only) and the BNNecks' frozen biases.
    assert frozen == {"base_vit.vit.blocks.1." + s for s in
                      ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                       "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                       "mlp.fc2.weight", "mlp.fc2.bias")} | {"base_vit.vit.norm.weight", "base_vit.vit.norm.bias"} | {
        f"{bn}.bias" for bn in ("bottleneck", "bottleneck_parts", "bottleneck_decoder", "non_skt_decoder",
                                "bottleneck_decoder_parts")}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, heat, cams)
        parts = loss_fn(out, pids)
    assert isinstance(out, PFDOutput)
    assert out.enc_scores.shape == (18, B, CLASSES) and out.dec_feats.shape == (18, B, 192)
    assert set(parts) == {"total", "enc_id", "enc_tri", "dec_id", "dec_tri", "push"}
    assert all(torch.isfinite(v) for v in parts.values())
    parts["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    unchanged = {n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])}
    # The first decoder layer's self-attention sees targets t = 0 (spec 6, as in the reference): its value
    # projection input is zero, and at the first step (zero biases) its output and norm1's input are zero,
    # so these get no gradient yet. Everything else must move.
    assert unchanged == {"decoder.layers.0.self_attn.in_proj_weight", "decoder.layers.0.self_attn.out_proj.weight",
                         "decoder.layers.0.norm1.weight"}, unchanged
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in frozen)
    # every part's BNNeck and classifier learns (slot j of Dp is filled for fully visible sample 0)
    for name in ("bottleneck_parts.weight", "bottleneck_decoder_parts.weight"):
        changed = (model.get_parameter(name) != before[name]).view(17, -1).any(dim=1)
        assert changed.all(), name


def test_encoder_parts_equal_one_b2_call_per_group():
    torch.manual_seed(1)
    model = build_model(tiny_cfg(), CLASSES, CAMS).eval()
    tokens = torch.randn(2, 1 + 32, 192)  # N = 8*4 = 32 patches: 16 groups of 2, the last of 16... p = 1
    n, k = 32, 17
    p = n // k
    groups = [tokens[:, 1 + i * p:1 + (i + 1) * p] for i in range(k - 1)] + [tokens[:, 1 + (k - 1) * p:]]
    expected = torch.stack([model.b2(torch.cat([tokens[:, :1], g], dim=1))[:, 0] for g in groups], dim=1)
    torch.testing.assert_close(model.encode_parts(tokens), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,blocks", [("full", 36), ("global", 1), ("global_visible", 2)])
def test_eval_features(kind, blocks):
    torch.manual_seed(2)
    model = build_model(tiny_cfg("MODEL.FEAT_KIND", kind), CLASSES, CAMS).eval()
    images, heat, cams, _ = tiny_batch()
    with torch.no_grad():
        feats = model(images, heat, cams)
    assert feats.shape == (B, blocks * 192) and model.feature_dim == blocks * 192
    assert torch.isfinite(feats).all()


def test_full_feature_layout_and_paper_variants():
    """Paper PVM with 5 views, DETR FFN residual, stride 12 (210-style overlapping grid)."""
    torch.manual_seed(3)
    cfg = tiny_cfg("MODEL.PVM_MODE", "paper", "MODEL.QUERY_NUM", "5", "MODEL.DECODER_FFN_RESIDUAL", "true",
                   "MODEL.STRIDE_SIZE", "[12, 12]")
    model = build_model(cfg, CLASSES, CAMS)
    assert model.base_vit.grid_size == ((128 - 16) // 12 + 1, (64 - 16) // 12 + 1)
    assert model.base_vit.vit.pos_embed.shape == (1, 1 + 10 * 5, 192)
    images, heat, cams, pids = tiny_batch()
    out = model.train()(images, heat, cams)
    assert out.dec_scores.shape == (6, B, CLASSES)
    assert torch.isfinite(build_loss(cfg)(out, pids)["total"])
    model.eval()
    with torch.no_grad():
        feats = model(images, heat, cams)
    assert feats.shape == (B, (2 + 17 + 5) * 192)


def test_bad_heatmap_shape_names_expected_shape():
    model = build_model(tiny_cfg(), CLASSES, CAMS).eval()
    images, heat, cams, _ = tiny_batch()
    with pytest.raises(ValueError, match=r"expected \[8, 17, 32, 16\]"):
        model(images, heat[:, :, :16], cams)


def test_baseline_has_same_signature_and_ignores_heatmaps():
    torch.manual_seed(4)
    cfg = tiny_cfg("MODEL.NAME", "vit_baseline")
    model = build_model(cfg, CLASSES, CAMS)
    images, heat, cams, pids = tiny_batch()
    out = model.train()(images, heat, cams)
    assert out.enc_scores.shape == (1, B, CLASSES) and out.dec_scores is None
    parts = build_loss(cfg)(out, pids)
    parts["total"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images, heat, cams), model(images, None, cams))
    assert model.feature_dim == 192


def test_full_size_layout_matches_reference_parameter_count(fixtures_dir):
    """ViT-B 256x128, 8 cameras, 702 ids, on the meta device: reference keys load, counts add up exactly."""
    fixture = json.loads((fixtures_dir / "pfd_reference_state_dict.json").read_text())["keys"]
    cfg = load_config(None, ["MODEL.PRETRAIN_CHOICE", "none"])
    with torch.device("meta"):
        model = build_model(cfg, 702, 8)
    assert model.feature_dim == 27_648
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"PFD ViT-B/16 256x128: {n_params:,} parameters, {n_trainable:,} trainable")

    def numel(keys):
        return sum(math.prod(fixture[k]) for k in keys)

    param_keys = [k for k in fixture if not k.endswith(BN_BUFFERS)]
    unused = [k for k in param_keys if k.startswith(REFERENCE_UNUSED)]
    assert numel(param_keys) == n_params + numel(unused)  # 138.84 M = ours + unused/aliased keys
    assert round(numel(fixture) / 1e6, 1) == 138.9
    # buffers: identical running statistics; 17 per-part step counters per stack become one
    buffer_keys = [k for k in fixture if k.endswith(BN_BUFFERS)]
    assert numel(buffer_keys) == sum(b.numel() for b in model.buffers()) + 2 * 16

    state = convert_reference_pfd({k: torch.empty(s, device="meta") for k, s in fixture.items()})
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
