"""MODEL.TOKEN_MASK pose: the ViT sees only the patches near visible keypoints, and everything when none is."""
import pytest
import torch
import torch.nn.functional as F
from test_model_pfd import CAMS, CLASSES, tiny_batch, tiny_cfg

from pfd.model import build_loss, build_model
from pfd.model.parts import pose_token_mask
from pfd.model.pfd import PFD
from pfd.pose.heatmaps import render_heatmaps


def test_token_mask_keeps_the_tokens_around_visible_keypoints():
    grid = (8, 4)
    heat = torch.zeros(3, 17, 32, 16)  # heatmaps at 4x the token grid
    heat[:, 0, 5, 6] = 0.9  # keypoint 0 on token (1, 1)
    heat[:, 1, 30, 13] = 0.9  # keypoint 1 on token (7, 3)
    heat[:, 2, 17, 2] = 0.2  # keypoint 2 on token (4, 0), but not visible
    visible = heat.flatten(2).amax(-1) >= 0.3  # [3, 17]
    visible[2] = False  # the third image shows no keypoint at all
    kept_r0 = ~pose_token_mask(heat, visible, grid, radius=0).view(3, *grid)
    kept_r1 = ~pose_token_mask(heat, visible, grid, radius=1).view(3, *grid)
    kept_column = ~pose_token_mask(heat, visible, grid, radius=1, shape="column").view(3, *grid)
    expect_r0 = torch.zeros(grid, dtype=torch.bool)
    expect_r0[1, 1] = expect_r0[7, 3] = True
    expect_r1 = torch.zeros(grid, dtype=torch.bool)
    expect_r1[0:3, 0:3] = expect_r1[6:8, 2:4] = True
    assert torch.equal(kept_r0[0], expect_r0) and torch.equal(kept_r0[1], expect_r0)
    assert torch.equal(kept_r1[0], expect_r1)
    expect_column = torch.zeros(grid, dtype=torch.bool)
    expect_column[0:3, 1] = expect_column[6:8, 3] = True  # the rows either side, in the keypoint's own column
    assert torch.equal(kept_column[0], expect_column)
    assert kept_r0[2].all() and kept_r1[2].all() and kept_column[2].all()  # nothing visible: the whole image is seen


@pytest.mark.parametrize("grid", [(8, 4), (15, 4)])  # stride 16, and the demo's [8, 16], whose bins overlap
def test_the_token_holding_a_peak_is_the_adaptive_pooling_bin_holding_it(grid):
    g = torch.Generator().manual_seed(0)
    keypoints = torch.cat([torch.rand(200, 17, 2, generator=g) * torch.tensor([63.0, 127.0]),
                           (torch.rand(200, 17, 1, generator=g) > 0.6).float()], -1)
    heat = render_heatmaps(keypoints, (128, 64), 1.0)  # [200, 17, 32, 16]
    visible = heat.flatten(2).amax(-1) >= 0.3
    pooled = F.adaptive_max_pool2d(heat, grid)  # what exports to ONNX only when the grid divides the heatmap
    at_peak = ((pooled >= pooled.flatten(2).amax(-1)[..., None, None]) & visible[..., None, None]).any(1)
    expected = ~at_peak.flatten(1) & visible.any(1, keepdim=True)
    assert torch.equal(pose_token_mask(heat, visible, grid, radius=0), expected)


def _hide_test_model(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg("MODEL.TOKEN_MASK", "pose", *opts), CLASSES, CAMS).eval()


def test_a_masked_model_ignores_the_pixels_of_hidden_patches_unless_no_keypoint_is_visible():
    model = _hide_test_model()
    images, heat, cams, _ = tiny_batch()  # every keypoint of image 0 on token (2, 1), none of image 1 visible
    changed = images.clone()
    changed[:, :, 112:, :] = torch.randn(len(images), 3, 16, 64)  # the bottom row of patches, far from token (2, 1)
    with torch.no_grad():
        before, after = model(images, heat, cams), model(changed, heat, cams)
    assert torch.allclose(before[0], after[0], atol=1e-6)  # hidden: the new pixels are never seen
    assert not torch.allclose(before[1], after[1], atol=1e-4)  # no keypoint visible: the image is seen whole
    near = images.clone()
    near[:, :, 32:48, 16:32] = 0  # token (2, 1) itself
    with torch.no_grad():
        assert not torch.allclose(model(near, heat, cams)[0], before[0], atol=1e-4)


def test_a_column_mask_hides_the_patch_beside_a_visible_keypoint_which_a_square_one_shows():
    images, heat, cams, _ = tiny_batch()  # every keypoint of image 0 on token (2, 1)
    beside = images.clone()
    beside[:, :, 32:48, 0:16] = torch.randn(len(images), 3, 16, 16)  # token (2, 0): same row, the next column
    for shape, seen in (("column", False), ("square", True)):
        model = _hide_test_model("MODEL.TOKEN_MASK_SHAPE", shape)
        with torch.no_grad():
            changed = not torch.allclose(model(images, heat, cams)[0], model(beside, heat, cams)[0], atol=1e-4)
        assert changed == seen, shape
    with pytest.raises(ValueError, match="TOKEN_MASK_SHAPE must be square or column"):
        PFD(model.base_vit, CLASSES, input_size=(128, 64), token_mask="pose", token_mask_shape="cross")


def test_the_mask_token_trains_and_the_default_model_has_none():
    images, heat, cams, pids = tiny_batch()
    model = _hide_test_model().train()
    build_loss(tiny_cfg())(model(images, heat, cams), pids)["total"].backward()
    assert model.mask_token.grad.abs().sum() > 0
    torch.manual_seed(0)
    plain = build_model(tiny_cfg(), CLASSES, CAMS)
    assert "mask_token" not in plain.state_dict() and plain.mask_token is None
    with pytest.raises(ValueError, match="TOKEN_MASK must be none or pose"):
        PFD(plain.base_vit, CLASSES, input_size=(128, 64), token_mask="everything")
