"""Numerical fidelity against the reference implementation's own outputs (../shared/fixtures).

The fixtures hold what the reference PFD (ViT-B/16, 702 ids, 8 cameras) and HRNet-W32 computed for
weights rebuilt from a recipe of their keys (fixtures/README.md). Here the same weights are rebuilt
in the reference layout, loaded through our converter / HRNet loader, fed the same inputs, and every
output is compared: PFD eval features, the training loss and its parts, the listed gradients, and
HRNet heatmaps. These guard every later change to the model (speed work included): a refactor of
PFA, PVM, disentangling, the decoder or the heads that changes what is computed fails here.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import pytest
import torch

from pfd.config import load_config
from pfd.model import build_loss, build_model
from pfd.model.convert import convert_reference_pfd, load_state_into, to_own_layout
from pfd.pose.hrnet import build_hrnet, load_hrnet_weights

FEATURE_TOL = 1e-5  # relative L2 error of the eval features
LOSS_TOL = 1e-5  # relative error of the training loss and its parts
GRAD_TOL = 1e-3  # relative L2 error of each listed gradient
HEATMAP_TOL = 1e-5  # relative L2 error of HRNet's heatmaps
# Reference per-part modules (`bottleneck_3`, `classifier_decoder_17`, ...) are one stacked module here.
_PART_KEY = re.compile(r"^(bottleneck_decoder|classifier_decoder|bottleneck|classifier)_(\d+)\.(\w+)$")


def recipe_value(key: str, shape: list[int], seed: int) -> torch.Tensor:
    """The fixture README's weight recipe: one generator per key, the first matching rule wins."""
    g = torch.Generator().manual_seed((zlib.crc32(key.encode()) + seed) % 2**31)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.long)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith(".weight") and len(shape) == 1:
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if key == "query_embed":
        return torch.randn(shape, generator=g)
    if len(shape) >= 2 and key != "base_vit.pos_embed" and not key.endswith(("cls_token", "sie_embed")):
        gain = (0.5 if len(shape) == 4 else 1.0) * (8.0 if key.endswith("in_proj_weight") else 1.0)
        return gain / math.sqrt(math.prod(shape[1:])) * torch.randn(shape, generator=g)
    return 0.02 * torch.randn(shape, generator=g)


def recipe_state_dict(layout_file: Path, seed: int) -> dict[str, torch.Tensor]:
    """Every key of a fixture layout (reference names), valued by the recipe."""
    keys = json.loads(layout_file.read_text())["keys"]
    return {key: recipe_value(key, shape, seed) for key, shape in keys.items()}


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference|| (L2 over all elements; |a - b| / |b| for scalars)."""
    return ((ours.double() - reference.double()).norm() / reference.double().norm()).item()


def our_grad(model: torch.nn.Module, reference_name: str) -> torch.Tensor:
    """The gradient of the parameter the reference calls `reference_name`, taken from our model.

    A per-part reference parameter (`bottleneck_decoder_5.weight`) is its slice of our stacked
    module; any other name goes through the converter's own renaming (`b2.1.weight` stays,
    `transformerdecoder.layers.1.norm3.weight` -> `decoder.layers.1.norm3.weight`, ...).
    """
    params = dict(model.named_parameters())
    part = _PART_KEY.match(reference_name)
    if part:
        module, index, name = part.group(1), int(part.group(2)) - 1, part.group(3)
        grad = params[f"{module}_parts.{name}"].grad  # classifiers [P, C, D]; BNNecks [P*D]
        return grad[index] if module.startswith("classifier") else grad.view(-1, model.embed_dim)[index]
    (name,) = convert_reference_pfd({reference_name: torch.empty(0)})
    return params[name].grad


@pytest.fixture(scope="module")
def pfd_reference(fixtures_dir) -> dict:
    return torch.load(fixtures_dir / "pfd_reference_outputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def pfd_run(fixtures_dir, pfd_reference) -> dict:
    """Our PFD with the recipe weights (through the converter): eval features, then one training
    forward/backward on the same inputs (dropout and drop-path 0, as the reference run)."""
    ref = pfd_reference
    layout = json.loads((fixtures_dir / "pfd_reference_state_dict.json").read_text())
    cfg = load_config(None, ["MODEL.PRETRAIN_CHOICE", "none", "MODEL.DROP_PATH", "0.0", "MODEL.DROP_OUT", "0.0",
                             "MODEL.ATT_DROP_RATE", "0.0", "MODEL.DECODER_DROPOUT", "0.0"])
    model = build_model(cfg, layout["num_classes"], layout["camera_num"])
    state, detected = to_own_layout(recipe_state_dict(fixtures_dir / "pfd_reference_state_dict.json",
                                                      int(ref["seed"])), "recipe weights")
    assert detected == "reference_pfd"
    load_state_into(model, state, "recipe weights", detected)
    with torch.no_grad():
        features = model.eval()(ref["images"], ref["heatmaps"], ref["camids"])
    losses = build_loss(cfg)(model.train()(ref["images"], ref["heatmaps"], ref["camids"]), ref["pids"])
    losses["total"].backward()
    return {"model": model, "features": features, "losses": {k: v.detach() for k, v in losses.items()}}


def test_recipe_rebuilds_the_documented_rules():
    """The rule order of fixtures/README.md on a few keys (a wrong rule would fail every comparison)."""
    seed = 2
    g = torch.Generator().manual_seed((zlib.crc32(b"b2.0.attn.qkv.weight") + seed) % 2**31)
    assert torch.equal(recipe_value("b2.0.attn.qkv.weight", [2304, 768], seed),
                       1 / math.sqrt(768) * torch.randn(2304, 768, generator=g))
    g = torch.Generator().manual_seed((zlib.crc32(b"base_vit.patch_embed.proj.weight") + seed) % 2**31)
    assert torch.equal(recipe_value("base_vit.patch_embed.proj.weight", [768, 3, 16, 16], seed),
                       0.5 / math.sqrt(3 * 16 * 16) * torch.randn(768, 3, 16, 16, generator=g))
    in_proj = recipe_value("transformerdecoder.layers.0.self_attn.in_proj_weight", [2304, 768], seed)
    assert 7.5 / math.sqrt(768) < in_proj.std() < 8.5 / math.sqrt(768)
    assert recipe_value("bottleneck.num_batches_tracked", [], seed).dtype == torch.long
    assert recipe_value("base_vit.pos_embed", [1, 129, 768], seed).std() < 0.03  # 0.02 * randn, not 1/sqrt(D)
    assert (recipe_value("bottleneck.running_var", [768], seed) >= 0.5).all()
    assert (recipe_value("bottleneck.weight", [768], seed) - 1).abs().max() < 1.0


def test_eval_features_match_the_reference(pfd_run, pfd_reference):
    features = pfd_run["features"]
    assert features.shape == pfd_reference["features"].shape == (4, 27_648)
    error = relative_error(features, pfd_reference["features"])
    print(f"PFD eval features: relative L2 error {error:.2e}")
    assert error <= FEATURE_TOL


@pytest.mark.parametrize("ours, reference", [("total", "loss_total"), ("encoder", "loss_encoder"),
                                             ("decoder", "loss_decoder"), ("push", "loss_push")])
def test_training_loss_matches_the_reference(pfd_run, pfd_reference, ours, reference):
    losses = pfd_run["losses"]
    value = {"total": losses["total"], "encoder": losses["enc_id"] + losses["enc_tri"],
             "decoder": losses["dec_id"] + losses["dec_tri"], "push": losses["push"]}[ours]
    error = relative_error(value, pfd_reference[reference])
    print(f"{reference}: ours {value.item():.7f}, reference {pfd_reference[reference].item():.7f}, "
          f"relative error {error:.2e}")
    assert error <= LOSS_TOL


def test_every_listed_gradient_matches_the_reference(pfd_run, pfd_reference):
    grads = pfd_reference["grads"]
    assert {"query_embed", "pose_decoder_linear.bias", "base_vit.cls_token", "b2.1.weight",
            "transformerdecoder.layers.1.norm3.weight", "bottleneck_decoder.weight"} <= set(grads)
    errors = {}
    for name, expected in grads.items():
        grad = our_grad(pfd_run["model"], name)
        assert grad is not None and grad.shape == expected.shape, name
        errors[name] = relative_error(grad, expected)
    print("gradients, relative L2 error: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= GRAD_TOL, errors


def test_part_gradient_names_map_onto_stacked_slices(pfd_run):
    """Per-part reference names select their own slice of our stacked heads (not the whole module)."""
    model = pfd_run["model"]
    assert torch.equal(our_grad(model, "bottleneck_decoder_3.weight"),
                       model.bottleneck_decoder_parts.weight.grad.view(17, -1)[2])
    assert torch.equal(our_grad(model, "classifier_17.weight"), model.classifier_parts.weight.grad[16])
    assert our_grad(model, "bottleneck_decoder.weight") is model.bottleneck_decoder.weight.grad


def test_hrnet_heatmaps_match_the_reference(fixtures_dir, tmp_path):
    reference = torch.load(fixtures_dir / "hrnet_w32_reference_outputs.pt", weights_only=True)
    assert reference["arch"] == "hrnet_w32"
    path = tmp_path / "pose_hrnet_w32_recipe.pth"
    torch.save(recipe_state_dict(fixtures_dir / "hrnet_w32_state_dict.json", int(reference["seed"])), path)
    model = load_hrnet_weights(build_hrnet("hrnet_w32"), path).eval()
    with torch.no_grad():
        heatmaps = model(reference["input"])
    assert heatmaps.shape == reference["heatmaps"].shape == (2, 17, 64, 48)
    error = relative_error(heatmaps, reference["heatmaps"])
    print(f"HRNet-W32 heatmaps: relative L2 error {error:.2e}")
    assert error <= HEATMAP_TOL
