"""pfd.pose.online: HRNet's input as MODEL.POSE_INPUT_NORM says, and float32 heatmaps under any autocast."""
import pytest
import torch

from pfd.config import load_config
from pfd.pose.hrnet import IMAGENET_MEAN, IMAGENET_STD, build_hrnet
from pfd.pose.online import OnlineHeatmaps


@pytest.fixture(scope="module")
def hrnet_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hrnet") / "pose_hrnet_w32_random.pth"
    torch.save(build_hrnet("hrnet_w32").state_dict(), path)
    return path


def _online(weights, *opts):
    cfg = load_config(None, ["MODEL.POSE_ONLINE", "true", "MODEL.POSE_ARCH", "hrnet_w32",
                             "MODEL.POSE_WEIGHT", str(weights), *opts])
    return OnlineHeatmaps(cfg)


def _images():
    return torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1  # ViT input, mean/std 0.5


@pytest.fixture(scope="module")
def reference_online(hrnet_weights):
    return _online(hrnet_weights)  # POSE_INPUT_NORM reference is the default


def test_reference_input_is_the_vit_tensor_as_is(hrnet_weights, reference_online):
    images = _images()
    hrnet = build_hrnet("hrnet_w32").eval()
    hrnet.load_state_dict(torch.load(hrnet_weights, weights_only=True))
    with torch.no_grad():
        expected = hrnet(images)
        imagenet_input = hrnet(((images * 0.5 + 0.5) - mean_std(IMAGENET_MEAN)) / mean_std(IMAGENET_STD))
    assert torch.allclose(reference_online(images), expected, rtol=1e-5, atol=1e-6)
    imagenet = _online(hrnet_weights, "MODEL.POSE_INPUT_NORM", "imagenet")  # undo mean/std 0.5, apply ImageNet's
    assert torch.allclose(imagenet(images), imagenet_input, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(imagenet_input, expected, atol=1e-3)


def mean_std(values):
    return torch.tensor(values).view(1, 3, 1, 1)


def test_unknown_input_norm_is_a_config_error():
    with pytest.raises(ValueError, match="MODEL.POSE_INPUT_NORM"):
        load_config(None, ["MODEL.POSE_INPUT_NORM", "coco"])


def test_heatmaps_are_float32_whatever_the_callers_autocast(reference_online):
    """Training calls it outside autocast, evaluation and the benchmarks inside: same heatmaps."""
    images = _images()
    plain = reference_online(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = reference_online(images)
    assert under_amp.dtype == torch.float32
    assert torch.equal(under_amp, plain)
