"""Checkpoints of the reference implementation -> this project's models, and one-call loading.

    load_checkpoint_into(model, path)      # ours, a reference PFD, or a TransReID baseline checkpoint
    convert_checkpoint_file(src, dst)      # a reference checkpoint saved in our layout (python -m pfd.model.convert)

Reference PFD layout (see ../shared/fixtures/pfd_reference_state_dict.json): `base_vit.*` (TransReID
ViT), `b2.{0,1}.*`, `transformerdecoder.{layers.N,norm}.*`, `query_embed`, `pose_decoder_linear.*`,
`bottleneck`, `bottleneck_{1..17}`, `bottleneck_decoder`, `bottleneck_decoder_{1..17}`,
`non_skt_decoder`, `classifier_encoder`, `classifier_{1..17}`, `classifier_decoder`,
`classifier_decoder_{1..17}`. The mapping is a rename plus stacking of the 17 per-part modules.
Dropped because the reference never uses them (`REFERENCE_UNUSED`): `transformerdecoderlayer.*`
(the template layer the decoder copies), `classifier.weight`, `base_vit.fc.*` (ImageNet head), and
`decoder_norm.*` (the same LayerNorm object as `transformerdecoder.norm`, stored twice).
A TransReID baseline (`build_transformer`: `base.*`, `bottleneck`, `classifier`) maps onto `vit_baseline`.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from ...errors import InvalidInputError, UserError
from ...io import atomic_save, claim_output_file
from ...state_dict import check_finite_state, load_state_dict_strict, load_torch_file, read_state_dict

__all__ = ["REFERENCE_UNUSED", "detect_layout", "convert_reference_pfd", "convert_transreid_baseline",
           "to_own_layout", "load_state_into", "load_checkpoint_into", "convert_checkpoint_file"]

_logger = logging.getLogger(__name__)

REFERENCE_UNUSED = ("transformerdecoderlayer.", "classifier.weight", "base_vit.fc.", "decoder_norm.")
_STACKED = {  # reference per-part module prefix -> our stacked module
    "bottleneck_": "bottleneck_parts",
    "bottleneck_decoder_": "bottleneck_decoder_parts",
    "classifier_": "classifier_parts",
    "classifier_decoder_": "classifier_decoder_parts",
}
_PART_KEY = re.compile(r"^(bottleneck_decoder_|classifier_decoder_|bottleneck_|classifier_)(\d+)\.(\w+)$")


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """'pfd' (ours), 'reference_pfd', 'transreid' (reference ViT baseline) or 'unknown'."""
    if any(k.startswith("base_vit.vit.") for k in state):
        return "pfd"
    if any(k.startswith("base_vit.") for k in state):
        return "reference_pfd"
    if any(k.startswith("base.") for k in state):
        return "transreid"
    return "unknown"


def _vit_key(key: str, prefix: str) -> str:
    """TransReID ViT key under `prefix` -> ours under base_vit (the camera embedding sits beside the timm ViT)."""
    rest = key[len(prefix):]
    return f"base_vit.{rest}" if rest == "sie_embed" else f"base_vit.vit.{rest}"


def convert_reference_pfd(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference PFD state dict (prefix-free) -> this project's PFD state dict."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str], dict[int, torch.Tensor]] = {}  # (our module, tensor name) -> {index: tensor}
    for key, value in state.items():
        if key.startswith(REFERENCE_UNUSED):
            continue
        match = _PART_KEY.match(key)
        if match:
            prefix, index, name = match.groups()
            parts.setdefault((_STACKED[prefix], name), {})[int(index)] = value
        elif key.startswith("base_vit."):
            out[_vit_key(key, "base_vit.")] = value
        elif key.startswith("transformerdecoder."):
            out["decoder." + key[len("transformerdecoder."):]] = value
        else:  # b2.*, query_embed, pose_decoder_linear.*, bottleneck*, non_skt_decoder.*, classifier_{en,de}coder
            out[key] = value
    for (module, name), by_index in parts.items():
        ordered = [by_index[i] for i in sorted(by_index)]
        if sorted(by_index) != list(range(1, len(ordered) + 1)):
            raise ValueError(f"reference checkpoint: {module} parts are numbered {sorted(by_index)}, expected 1..N")
        if name == "num_batches_tracked":  # one counter per part, all equal in training: keep the largest
            out[f"{module}.{name}"] = torch.stack(ordered).max()
        elif module.startswith("classifier"):
            out[f"{module}.{name}"] = torch.stack(ordered)  # [P, C, D]
        else:
            out[f"{module}.{name}"] = torch.cat(ordered)  # [P*D] BatchNorm over flattened parts
    return out


def convert_transreid_baseline(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TransReID `build_transformer` state dict -> this project's ViTBaseline state dict."""
    return {(_vit_key(k, "base.") if k.startswith("base.") else k): v for k, v in state.items()
            if not k.startswith("base.fc.")}


_CONVERTERS = {"reference_pfd": convert_reference_pfd, "transreid": convert_transreid_baseline}
_FIT_HINT = ("this model (check MODEL.NAME, TRANSFORMER_TYPE, STRIDE_SIZE, INPUT.SIZE_TRAIN, QUERY_NUM "
             "and the number of classes/cameras)")


def to_own_layout(state: dict[str, torch.Tensor], source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(`state` in this project's layout, the layout it came in); `source` names the file in errors."""
    layout = detect_layout(state)
    if layout == "unknown":
        raise ValueError(f"{source}: not a PFD / ViT re-ID checkpoint (first keys: {sorted(state)[:6]})")
    return (_CONVERTERS[layout](state) if layout in _CONVERTERS else state), layout


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, layout: str) -> None:
    """Load a state dict already in this project's layout (`to_own_layout`) into `model`, strictly."""
    load_state_dict_strict(model, state, f"{source} ({layout} layout)", _FIT_HINT)
    _logger.info("loaded %s checkpoint %s", layout, source)


def load_checkpoint_into(model: nn.Module, path: str | Path) -> str:
    """Load a checkpoint file into `model` (strict), whatever its layout; returns the layout name.

    Accepts this project's training checkpoints ({"model": ...}), bare state dicts, and reference
    PFD / TransReID checkpoints (possibly `module.`-prefixed or wrapped in {"state_dict"|"model": ...}),
    which are converted on the fly. Errors name the file and the keys that do not fit.
    """
    state, layout = to_own_layout(read_state_dict(path), path)
    load_state_into(model, state, path, layout)
    return layout


def is_converted_checkpoint(path: Path) -> bool:
    """True when `path` is a file convert_checkpoint_file wrote ({"model", "source"}): it may be replaced."""
    try:
        obj = load_torch_file(path)
    except UserError:
        return False
    return isinstance(obj, dict) and set(obj) == {"model", "source"}


def convert_checkpoint_file(src: str | Path, dst: str | Path) -> str:
    """Write the reference PFD (or TransReID baseline) checkpoint `src` in this project's layout to `dst`, as
    {"model": state_dict, "source": src}; returns the layout `src` came in.

    `dst` must be new or a file this function wrote (pfd.io's guard); `src` must be a reference checkpoint
    with finite weights (a diverged run's would convert into an unusable file). Else an InvalidInputError,
    raised before anything is written."""
    claim_output_file(dst, is_converted_checkpoint, what="converted checkpoint", hint="choose another output file")
    state = read_state_dict(src)
    layout = detect_layout(state)
    if layout not in _CONVERTERS:
        raise InvalidInputError(f"{src}: layout {layout!r} is not a reference checkpoint (expected "
                                f"{' or '.join(_CONVERTERS)}); nothing to convert")
    check_finite_state(state, src)
    atomic_save({"model": _CONVERTERS[layout](state), "source": str(src)}, dst)
    return layout
