"""ImageNet ViT loading, reference checkpoint conversion, and our own checkpoints' round trip."""
import json

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pfd.cli.convert import main as convert_main
from pfd.config import load_config
from pfd.errors import UserError
from pfd.inference.checkpoint import load_eval_model
from pfd.model import build_model, load_checkpoint_into
from pfd.model.convert import convert_reference_pfd
from pfd.state_dict import read_state_dict

from engine_tiny import reference_layout

TINY = ["MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "2", "MODEL.NUM_HEAD", "4",
        "MODEL.DECODER_FFN_DIM", "64", "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]


def tiny_cfg(*opts):
    return load_config(None, TINY + list(opts))


@pytest.fixture(scope="module")
def imagenet_vit():
    """A tiny timm ViT at 224 (pos_embed [1, 197, 192], head.*) as ImageNet files are."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", depth=2, pretrained=False, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("stride", [16, 12])
def test_imagenet_weights_load_resized_and_copied_into_b2(tmp_path, imagenet_vit, suffix, stride):
    path = tmp_path / f"vit{suffix}"
    if suffix == ".pth":
        torch.save({"model": imagenet_vit}, path)
    else:
        save_file(imagenet_vit, str(path))
    model = build_model(tiny_cfg("MODEL.PRETRAIN_PATH", str(path), "MODEL.STRIDE_SIZE", f"[{stride}, {stride}]"), 5, 3)
    vit = model.base_vit.vit
    grid = ((128 - 16) // stride + 1, (64 - 16) // stride + 1)
    src = imagenet_vit["pos_embed"]
    resized = F.interpolate(src[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2), size=grid, mode="bilinear",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, 192)
    torch.testing.assert_close(vit.pos_embed, torch.cat([src[:, :1], resized], dim=1))
    assert torch.equal(vit.patch_embed.proj.weight, imagenet_vit["patch_embed.proj.weight"])
    for name, value in model.b2[0].state_dict().items():  # b2 = copy of the last block (blocks.1 here)
        assert torch.equal(value, imagenet_vit[f"blocks.1.{name}"]), name
    assert torch.equal(model.b2[1].weight, imagenet_vit["norm.weight"])
    assert model.b2[0].attn.qkv.weight.data_ptr() != vit.blocks[1].attn.qkv.weight.data_ptr()  # own parameters


def test_wrong_shapes_and_missing_files_are_errors_naming_them(tmp_path, imagenet_vit):
    bad = dict(imagenet_vit, **{"blocks.0.attn.qkv.weight": torch.zeros(10, 192)})
    del bad["blocks.1.mlp.fc2.bias"]
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"bad\.pth.*blocks\.1\.mlp\.fc2\.bias.*blocks\.0\.attn\.qkv\.weight"):
        build_model(tiny_cfg("MODEL.PRETRAIN_PATH", str(path)), 5, 3)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model(tiny_cfg("MODEL.PRETRAIN_PATH", str(missing)), 5, 3)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model(tiny_cfg("MODEL.PRETRAIN_CHOICE", "self", "MODEL.PRETRAIN_PATH", str(missing)), 5, 3)


def test_read_state_dict_unwraps_and_strips_prefixes(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.a": torch.ones(2), "module._orig_mod.b": torch.zeros(1)}, "epoch": 3}, path)
    assert sorted(read_state_dict(path)) == ["a", "b"]


def _features(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    images, heat = torch.randn(4, 3, 128, 64, generator=g), torch.rand(4, 17, 32, 16, generator=g)
    with torch.no_grad():
        return model.eval()(images, heat, torch.tensor([0, 1, 2, 0]))


def test_own_checkpoint_round_trips_to_identical_features(tmp_path):
    torch.manual_seed(1)
    cfg = tiny_cfg("MODEL.PRETRAIN_CHOICE", "none")
    model = build_model(cfg, 5, 3)
    model.train()(torch.randn(8, 3, 128, 64), torch.rand(8, 17, 32, 16), torch.arange(8) % 3)  # BN statistics
    expected = _features(model)
    path = tmp_path / "ckpt.pth"
    torch.save({"format": "pfd-checkpoint-v1", "epoch": 1,
                "model": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    loaded = build_model(tiny_cfg("MODEL.PRETRAIN_CHOICE", "self", "MODEL.PRETRAIN_PATH", str(path)), 5, 3)
    assert torch.equal(_features(loaded), expected)
    other = build_model(cfg, 5, 3)
    assert load_checkpoint_into(other, path) == "pfd"
    assert torch.equal(_features(other), expected)
    with pytest.raises(ValueError, match=r"ckpt\.pth.*classifier_encoder\.weight"):  # 7 classes, not 5
        load_checkpoint_into(build_model(cfg, 7, 3), path)


def test_reference_checkpoint_converts_and_loads_strictly(fixtures_dir, tmp_path):
    """Full size: every fixture key filled at random, converted, loaded strictly, each value in its place."""
    keys = json.loads((fixtures_dir / "pfd_reference_state_dict.json").read_text())["keys"]
    torch.manual_seed(2)
    ref = {k: (torch.rand(s) + 0.5 if k.endswith("running_var") else torch.randn(s) * 0.02) if s else torch.tensor(7)
           for k, s in keys.items()}
    model = build_model(load_config(None, ["MODEL.PRETRAIN_CHOICE", "none"]), 702, 8)
    result = model.load_state_dict(convert_reference_pfd(ref), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    d = 768
    vit = model.base_vit.vit
    assert torch.equal(vit.blocks[3].mlp.fc2.weight, ref["base_vit.blocks.3.mlp.fc2.weight"])
    assert torch.equal(vit.pos_embed, ref["base_vit.pos_embed"])
    assert torch.equal(model.base_vit.sie_embed, ref["base_vit.sie_embed"])
    assert torch.equal(model.b2[0].attn.qkv.weight, ref["b2.0.attn.qkv.weight"])
    assert torch.equal(model.decoder.layers[1].multihead_attn.in_proj_weight,
                       ref["transformerdecoder.layers.1.multihead_attn.in_proj_weight"])
    assert torch.equal(model.decoder.norm.weight, ref["transformerdecoder.norm.weight"])
    assert torch.equal(model.query_embed, ref["query_embed"])
    for i in (1, 9, 17):
        assert torch.equal(model.classifier_parts.weight[i - 1], ref[f"classifier_{i}.weight"])
        assert torch.equal(model.classifier_decoder_parts.weight[i - 1], ref[f"classifier_decoder_{i}.weight"])
        part = slice((i - 1) * d, i * d)
        assert torch.equal(model.bottleneck_parts.running_var[part], ref[f"bottleneck_{i}.running_var"])
        assert torch.equal(model.bottleneck_decoder_parts.weight[part], ref[f"bottleneck_decoder_{i}.weight"])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        feats = model.eval()(torch.randn(2, 3, 256, 128, generator=g), torch.rand(2, 17, 64, 32, generator=g),
                             torch.tensor([0, 7]))
    assert feats.shape == (2, 27_648) and torch.isfinite(feats).all()


def test_convert_cli_and_layout_detection(tmp_path):
    """A reference-layout file (module.-prefixed) made from a tiny model goes through the CLI and loads."""
    torch.manual_seed(3)
    cfg = tiny_cfg("MODEL.PRETRAIN_CHOICE", "none")
    model = build_model(cfg, 5, 3)
    ref = reference_layout(model.state_dict())
    ref["base_vit.fc.weight"], ref["classifier.weight"] = torch.zeros(3, 192), torch.zeros(5, 192)
    ref["decoder_norm.weight"] = ref["transformerdecoder.norm.weight"]
    src, dst = tmp_path / "ref.pth", tmp_path / "ours.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.items()}}, src)
    convert_main([str(src), str(dst)])
    convert_main([str(src), str(dst)])  # its own earlier output may be replaced (a user's file may not)
    fresh = build_model(cfg, 5, 3)
    assert load_checkpoint_into(fresh, dst) == "pfd"
    assert torch.equal(_features(fresh), _features(model))
    fresh2 = build_model(cfg, 5, 3)
    assert load_checkpoint_into(fresh2, src) == "reference_pfd"
    assert torch.equal(_features(fresh2), _features(model))


def test_transreid_baseline_checkpoint_loads_into_vit_baseline(tmp_path):
    torch.manual_seed(4)
    cfg = tiny_cfg("MODEL.PRETRAIN_CHOICE", "none", "MODEL.NAME", "transformer")  # the reference's name
    model = build_model(cfg, 5, 3)
    ref = {("base." + k[len("base_vit.vit."):] if k.startswith("base_vit.vit.") else
            "base.sie_embed" if k == "base_vit.sie_embed" else k): v for k, v in model.state_dict().items()}
    ref["base.fc.weight"] = torch.zeros(3, 192)
    path = tmp_path / "transreid.pth"
    torch.save(ref, path)
    fresh = build_model(cfg, 5, 3)
    assert load_checkpoint_into(fresh, path) == "transreid"
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(images, None, torch.tensor([0, 2])),
                           model.eval()(images, None, torch.tensor([0, 2])))


@pytest.mark.parametrize("layout", ["pfd", "reference_pfd"])
def test_eval_model_reads_its_checkpoint_once(tmp_path, monkeypatch, layout):
    """test.py / query.py: sizes and weights come from one read of the file (it was read three times)."""
    torch.manual_seed(5)
    cfg = tiny_cfg("MODEL.PRETRAIN_CHOICE", "none")
    model = build_model(cfg, 5, 3)
    model.train()(torch.randn(8, 3, 128, 64), torch.rand(8, 17, 32, 16), torch.arange(8) % 3)  # BN statistics
    path = tmp_path / "ckpt.pth"
    if layout == "pfd":
        torch.save({"format": "pfd-checkpoint-v1", "model": model.state_dict(), "num_classes": 5, "num_cameras": 3},
                   path)
    else:
        torch.save({"state_dict": reference_layout(model.state_dict())}, path)
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    loaded, info = load_eval_model(cfg, path, torch.device("cpu"))
    assert reads == [path]
    assert info == {"checkpoint": str(path), "format": layout, "num_classes": 5, "num_cameras": 3}
    assert torch.equal(_features(loaded), _features(model))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused_when_loaded(tmp_path, bad):
    """Issue 23: a checkpoint with a NaN weight was found only as `distmat contains NaN` after the
    extraction; loading it now names the file and the first bad key."""
    model = build_model(tiny_cfg("MODEL.PRETRAIN_CHOICE", "none"), 5, 3)
    state = model.state_dict()
    state["base_vit.vit.blocks.1.attn.qkv.weight"][3, 7] = bad
    path = tmp_path / "diverged.pth"
    torch.save({"format": "pfd-checkpoint-v1", "epoch": 1, "model": state}, path)
    kind = "NaN" if bad != bad else "Inf"
    with pytest.raises(UserError, match=rf"diverged\.pth.*: weight base_vit\.vit\.blocks\.1\.attn\.qkv\.weight holds "
                                        rf"{kind} \(1 of \d+ tensors"):
        load_checkpoint_into(build_model(tiny_cfg("MODEL.PRETRAIN_CHOICE", "none"), 5, 3), path)
