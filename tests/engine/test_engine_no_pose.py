"""TEST.NO_POSE: evaluation heatmaps of images where no person was found."""
import torch

from pfd.config import load_config
from pfd.pose.heatmap_maker import WHOLE_BODY_PRIOR, HeatmapMaker
from pfd.pose.heatmaps import render_heatmaps

SIZE = (128, 64)


def keypoints() -> torch.Tensor:
    """[2, 17, 3]: a detected person (random points, confidence 0.8), then one with no person (zeros)."""
    found = torch.cat([torch.rand(17, 2) * torch.tensor([63.0, 127.0]), torch.full((17, 1), 0.8)], 1)
    return torch.stack([found, torch.zeros(17, 3)])


def test_prior_fills_only_images_without_a_person_and_only_in_evaluation():
    kps, images = keypoints(), torch.zeros(2, 3, *SIZE)
    cfg = load_config(None, ["TEST.NO_POSE", "prior"])
    heat = HeatmapMaker(cfg, SIZE, evaluation=True)(images, kps)
    assert torch.equal(heat[0], render_heatmaps(kps[:1], SIZE, cfg.INPUT.HEATMAP_SIGMA)[0])
    prior = torch.tensor(WHOLE_BODY_PRIOR) * torch.tensor([63.0, 127.0, 1.0])
    assert torch.allclose(heat[1], render_heatmaps(prior[None], SIZE, cfg.INPUT.HEATMAP_SIGMA)[0])
    assert heat[1].amax((1, 2)).min() > 0.5  # every part gets a peak
    training = HeatmapMaker(cfg, SIZE)(images, kps)  # the training maker never uses the prior
    assert training[1].abs().max() == 0


def test_default_keeps_every_keypoint_invisible():
    heat = HeatmapMaker(load_config(), SIZE, evaluation=True)(torch.zeros(2, 3, *SIZE), keypoints())
    assert heat[1].abs().max() == 0
