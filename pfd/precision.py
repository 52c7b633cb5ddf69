"""Mixed precision: which autocast dtype SOLVER.AMP (training) or TEST.AMP (evaluation) means on a
device, and the matching grad scaler."""
from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["autocast_dtype", "eval_dtype", "dtype_name", "autocast", "build_grad_scaler", "cpu_has_bf16_matmul"]

_NAMED = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX tiles).

    Measured on the demo's train step: bf16 autocast takes half the fp32 time with AMX; where
    PyTorch emulates bf16 it is 3x (AVX-512) to 14x (AVX2) slower than fp32.
    """
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def autocast_dtype(setting: str, device: torch.device, key: str = "SOLVER.AMP") -> torch.dtype | None:
    """auto: bf16 on GPUs that support it, fp16 on older GPUs; on CPU bf16 with AMX, else None (fp32).

    An explicit bf16/fp16 on CPU is honoured for bf16 only (CPU autocast has no fp16 benefit).
    """
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16_matmul() else None
    if setting not in _NAMED:
        raise ValueError(f"{key} must be auto, bf16, fp16 or fp32, got {setting!r}")
    dtype = _NAMED[setting]
    if device.type != "cuda" and dtype is torch.float16:
        raise ValueError(f"{key} fp16 needs a CUDA device; use bf16, fp32 or auto on CPU")
    return dtype


def eval_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of every evaluation (training's periodic one, test.py, query.py): TEST.AMP,
    float32 by default as in the reference."""
    return autocast_dtype(cfg.TEST.AMP, device, "TEST.AMP")


def dtype_name(dtype: torch.dtype | None) -> str:
    """"fp32", "bf16" or "fp16": how metrics.json and logs name an autocast dtype."""
    return {v: k for k, v in _NAMED.items()}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `dtype`, or a no-op context for full precision.

    bf16 on CPU also selects PyTorch's math attention: its CPU flash-attention kernel is slower in
    bf16 than the math path at re-ID sequence lengths (forward + backward, 3 heads x 64, batch 32 x
    61 tokens: 22 ms flash vs 9 ms math; 12 heads, 8 x 129 tokens: 52 vs 21 ms), and only overtakes
    it beyond about 250 tokens. The result is the same attention either way.
    """
    if dtype is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
    if device.type == "cpu" and dtype is torch.bfloat16:
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def build_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 (bf16 and fp32 have the range to go without)."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
