"""pfd.precision: which autocast a setting means, and the attention backend that goes with CPU bf16."""
import pytest
import torch
import torch.nn.functional as F

from pfd.precision import autocast, autocast_dtype

CPU = torch.device("cpu")


def test_cpu_bf16_autocast_runs_attention_on_the_math_backend():
    """PyTorch's CPU flash attention is slower in bf16 than the math path at re-ID sequence lengths,
    so bf16 training on CPU disables it for the duration of the step, and only then."""
    q, k, v = torch.randn(3, 2, 2, 9, 16).unbind(0)  # [B, heads, tokens, dim] each
    assert torch.backends.cuda.flash_sdp_enabled()
    with autocast(CPU, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
        assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
        out = F.scaled_dot_product_attention(q, k, v)
    assert torch.backends.cuda.flash_sdp_enabled() and not torch.is_autocast_enabled("cpu")
    assert out.dtype is torch.bfloat16
    expected = torch.softmax(q @ k.transpose(-1, -2) / 4, dim=-1) @ v
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)


def test_full_precision_changes_nothing():
    with autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu") and torch.backends.cuda.flash_sdp_enabled()


@pytest.mark.parametrize("amx", [True, False])
def test_auto_on_cpu_is_bf16_only_where_the_cpu_multiplies_bf16_in_hardware(monkeypatch, amx):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert autocast_dtype("auto", CPU) is (torch.bfloat16 if amx else None)
    assert autocast_dtype("fp32", CPU) is None and autocast_dtype("bf16", CPU) is torch.bfloat16


def test_fp16_on_cpu_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="TEST.AMP fp16 needs a CUDA device"):
        autocast_dtype("fp16", CPU, "TEST.AMP")
