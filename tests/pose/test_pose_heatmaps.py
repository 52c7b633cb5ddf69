"""Batched Gaussian heatmaps and their decoding."""
import math

import pytest
import torch

from pfd.pose.heatmaps import decode_heatmaps, render_heatmaps, to_heatmap_coords, to_input_coords

INPUT_HW = (256, 128)


def random_keypoints(batch: int, seed: int, input_hw=INPUT_HW) -> torch.Tensor:
    """[B, 17, 3] keypoints anywhere on the input image (borders included), conf in [0.1, 1]."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(batch, 17, 3, generator=g)
    kp[..., 0] = kp[..., 0] * input_hw[1] - 0.5
    kp[..., 1] = kp[..., 1] * input_hw[0] - 0.5
    kp[..., 2] = 0.1 + 0.9 * kp[..., 2]
    return kp


def test_shape_peak_value_and_position():
    kp = torch.zeros(2, 17, 3)
    # input x = 4 * i + 1.5 lands exactly on heatmap pixel i: (x + 0.5) * 32 / 128 - 0.5 = i
    kp[0, 3] = torch.tensor([4 * 10 + 1.5, 4 * 50 + 1.5, 0.8])
    kp[1, 16] = torch.tensor([4 * 0 + 1.5, 4 * 63 + 1.5, 1.0])
    heat = render_heatmaps(kp, INPUT_HW, sigma=2.0)
    assert heat.shape == (2, 17, 64, 32) and heat.dtype == torch.float32
    assert heat[0, 3, 50, 10] == pytest.approx(0.8) and heat[0, 3].max() == heat[0, 3, 50, 10]
    assert heat[1, 16, 63, 0] == pytest.approx(1.0)
    # Gaussian profile in heatmap pixels: value at distance (dx, dy) = conf * exp(-(dx^2 + dy^2) / (2 sigma^2))
    assert heat[0, 3, 52, 11] == pytest.approx(0.8 * math.exp(-(1 + 4) / 8), rel=1e-5)
    # zero confidence -> empty channel
    assert heat[0, 0].abs().max() == 0 and heat[1, :16].abs().max() == 0


def test_peak_equals_confidence_off_grid():
    kp = random_keypoints(8, seed=1)
    heat = render_heatmaps(kp, INPUT_HW, sigma=2.0)
    torch.testing.assert_close(heat.amax(dim=(-2, -1)), kp[..., 2])


def test_outside_keypoints_give_empty_maps():
    kp = torch.tensor([[[-3.0, 10.0, 1.0], [10.0, 300.0, 1.0], [130.0, 10.0, 1.0]]])
    assert render_heatmaps(kp, INPUT_HW, sigma=2.0).abs().max() == 0


def test_custom_heatmap_size_and_device_dtype():
    kp = random_keypoints(3, seed=2).double()
    heat = render_heatmaps(kp, INPUT_HW, sigma=1.5, heatmap_hw=(32, 16))
    assert heat.shape == (3, 17, 32, 16) and heat.dtype == torch.float64 and heat.device == kp.device
    decoded = decode_heatmaps(heat, input_hw=INPUT_HW)
    torch.testing.assert_close(decoded, kp, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_decode_inverts_render(sigma):
    kp = random_keypoints(16, seed=3)
    heat = render_heatmaps(kp, INPUT_HW, sigma=sigma)
    decoded = decode_heatmaps(heat, input_hw=INPUT_HW)  # input pixels
    assert decoded.shape == (16, 17, 3)
    assert (decoded[..., :2] - kp[..., :2]).abs().max() < 0.05  # within 0.05 input px (border peaks included)
    torch.testing.assert_close(decoded[..., 2], kp[..., 2])
    in_heatmap = decode_heatmaps(heat)  # heatmap pixels
    expected = to_heatmap_coords(kp[..., :2], INPUT_HW, (64, 32))
    assert (in_heatmap[..., :2] - expected).abs().max() < 0.02


def test_decode_plain_argmax_cases():
    heat = torch.zeros(1, 2, 8, 6)
    heat[0, 0, 5, 2] = 0.7  # a single hot pixel: no neighbours to fit, position = argmax
    decoded = decode_heatmaps(heat)
    torch.testing.assert_close(decoded[0, 0], torch.tensor([2.0, 5.0, 0.7]))
    torch.testing.assert_close(decoded[0, 1], torch.zeros(3))  # empty map: conf 0


def test_coordinate_maps_are_inverse():
    xy = torch.tensor([[0.0, 0.0], [127.0, 255.0], [-0.5, -0.5], [63.2, 100.7]])
    hm = to_heatmap_coords(xy, INPUT_HW, (64, 32))
    torch.testing.assert_close(hm[2], torch.tensor([-0.5, -0.5]))  # image edge maps to heatmap edge
    torch.testing.assert_close(to_input_coords(hm, (64, 32), INPUT_HW), xy)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, K, 3\].*\(17, 3\)"):
        render_heatmaps(torch.zeros(17, 3), INPUT_HW, 2.0)
    with pytest.raises(ValueError, match="sigma"):
        render_heatmaps(torch.zeros(1, 17, 3), INPUT_HW, 0.0)
    with pytest.raises(ValueError, match=r"\[B, K, h, w\]"):
        decode_heatmaps(torch.zeros(17, 8, 6))


def test_decoding_bf16_heatmaps_keeps_float32_coordinates():
    kp = torch.tensor([[[50.3, 100.7, 1.0]] * 17])  # [1, 17, 3] at 256x128 input
    heat = render_heatmaps(kp, (256, 128), 2.0).to(torch.bfloat16)
    out = decode_heatmaps(heat, input_hw=(256, 128))
    assert out.dtype == torch.float32
    assert torch.allclose(out[..., :2], kp[..., :2], atol=0.35)  # bf16 values, float32 positions
