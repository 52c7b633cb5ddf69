"""INPUT.OCCLUDE_PROB: occluders pasted on training batches, covered keypoints' confidence set to 0; INPUT.HIDE_PROB:
the keypoints of a box hidden, nothing pasted."""
import pytest
import torch

from pfd.config import ConfigError, load_config
from pfd.data.occlude.augment import BatchOccluder, box_masks, build_batch_occluder, covered_keypoints, side_boxes
from pfd.engine.trainer import Trainer

from engine_tiny import tiny_config

H, W, B = 128, 64, 16
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def batch(seed: int = 0):
    """Random images [B, 3, H, W], keypoints on random pixels [B, 17, 3] (confidence 0.5-1), 4 ids x 4."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, H, W, generator=g)
    keypoints = torch.stack([torch.randint(0, W, (B, 17), generator=g).float(),
                             torch.randint(0, H, (B, 17), generator=g).float(),
                             0.5 + 0.5 * torch.rand(B, 17, generator=g)], dim=-1)
    pids = torch.arange(4).repeat_interleave(4)
    return images, keypoints, pids


@pytest.mark.parametrize("kind", ["person", "object", "patch"])
def test_covered_keypoints_get_confidence_zero_and_nothing_else_changes(kind):
    images, keypoints, pids = batch()
    occluder = BatchOccluder(1.0, [kind], [0.2, 0.6], (H, W), MEAN, STD)
    torch.manual_seed(0)
    out_images, out_keypoints = occluder(images, keypoints, pids)
    changed = (out_images != images).any(1)  # [B, H, W]: where an occluder was pasted
    share = changed.float().mean((1, 2))
    assert (share > 0.1).all() and (share < 0.7).all(), share
    on_occluder = changed[torch.arange(B).view(-1, 1), keypoints[..., 1].long(), keypoints[..., 0].long()]
    assert on_occluder.any() and (~on_occluder).any()
    assert (out_keypoints[..., 2][on_occluder] == 0).all()
    assert torch.equal(out_keypoints[..., 2][~on_occluder], keypoints[..., 2][~on_occluder])
    assert torch.equal(out_keypoints[..., :2], keypoints[..., :2])


def test_person_occluders_come_from_another_identity_of_the_batch():
    images, keypoints, pids = batch()
    images = pids.float().view(-1, 1, 1, 1).expand(B, 3, H, W).clone()  # each image holds its pid
    torch.manual_seed(1)
    out, _ = BatchOccluder(1.0, ["person"], [0.2, 0.6], (H, W), MEAN, STD)(images, keypoints, pids)
    changed = out != images
    assert changed.any((1, 2, 3)).all()
    donors = torch.where(changed, out, torch.nan)
    assert (donors.nan_to_num(-1) != pids.float().view(-1, 1, 1, 1)).all()  # never the sample's own id
    # a side occluder: the changed columns touch the left or the right edge
    columns = changed.any(2)[:, 0]  # [B, W]
    assert (columns[:, 0] | columns[:, -1]).all()


def test_probability_zero_returns_the_batch_untouched_and_draws_nothing():
    images, keypoints, pids = batch()
    state = torch.get_rng_state()
    out_images, out_keypoints = BatchOccluder(0.0, ["patch"], [0.2, 0.6], (H, W), MEAN, STD)(images, keypoints, pids)
    assert out_images is images and out_keypoints is keypoints
    assert torch.equal(torch.get_rng_state(), state)  # dropout and later draws see the same stream
    assert build_batch_occluder(load_config()) is None  # the default: no occluder at all (the reference)


def test_probability_is_respected_on_average():
    images, keypoints, pids = batch()
    torch.manual_seed(2)
    occluder = BatchOccluder(0.5, ["patch", "object"], [0.2, 0.6], (H, W), MEAN, STD)
    hits = sum(int((occluder(images, keypoints, pids)[0] != images).any((1, 2, 3)).sum()) for _ in range(20))
    assert 0.35 < hits / (20 * B) < 0.65


def test_hiding_zeroes_the_keypoints_of_a_side_box_and_leaves_the_pixels():
    images, keypoints, pids = batch()
    torch.manual_seed(3)
    out_images, out_keypoints = BatchOccluder(0.0, ["patch"], [0.3, 0.5], (H, W), MEAN, STD, hide_prob=1.0)(
        images, keypoints, pids)
    assert torch.equal(out_images, images) and torch.equal(out_keypoints[..., :2], keypoints[..., :2])
    hidden = out_keypoints[..., 2] == 0  # [B, 17]
    assert hidden.any(1).all() and (~hidden).any(1).all()
    assert torch.equal(out_keypoints[..., 2][~hidden], keypoints[..., 2][~hidden])
    # the hidden keypoints of each sample fill a box that touches the bottom, left or right edge
    lowest = keypoints[..., 1].masked_fill(~hidden, -1).amax(1)
    y_min = keypoints[..., 1].masked_fill(~hidden, H).amin(1)
    x_min, x_max = keypoints[..., 0].masked_fill(~hidden, W).amin(1), keypoints[..., 0].masked_fill(~hidden, -1).amax(1)
    inside = ((keypoints[..., 1] >= y_min[:, None]) & (keypoints[..., 1] <= lowest[:, None])
              & (keypoints[..., 0] >= x_min[:, None]) & (keypoints[..., 0] <= x_max[:, None]))
    assert torch.equal(inside, hidden)


def test_hiding_spares_the_occluded_images_and_keeps_its_share():
    images, keypoints, pids = batch()
    torch.manual_seed(4)
    occluder = BatchOccluder(0.5, ["patch"], [0.2, 0.6], (H, W), MEAN, STD, hide_prob=0.5)
    pasted = hid = 0
    for _ in range(20):
        out_images, out_keypoints = occluder(images, keypoints, pids)
        occluded = (out_images != images).any((1, 2, 3))
        hidden = (out_keypoints[..., 2] == 0).any(1)
        pasted, hid = pasted + int(occluded.sum()), hid + int((hidden & ~occluded).sum())
    assert 0.35 < pasted / (20 * B) < 0.65 and 0.15 < hid / (20 * B) < 0.35  # half of the unoccluded half
    assert build_batch_occluder(load_config(None, ["INPUT.HIDE_PROB", "0.3"])).hide_prob == 0.3


def test_helpers_on_known_boxes():
    one = torch.tensor([1])
    mask = box_masks(one * 2, one * 3, one * 5, one * 7, (10, 8))[0]
    assert mask.sum() == 12 and mask[3:7, 2:5].all()
    kps = torch.tensor([[[2.4, 3.0, 1], [4.6, 6.0, 1], [-1.0, 4.0, 1], [2.0, 7.0, 1]]])
    assert covered_keypoints(kps, mask[None]).tolist() == [[True, False, False, False]]
    torch.manual_seed(5)
    boxes = side_boxes(torch.full((200,), 0.4), (H, W))  # [200, H, W]
    share = boxes.float().mean((1, 2))
    assert ((share - 0.4).abs() < 0.03).all()
    assert (boxes[:, -1].any(1) | boxes[:, :, 0].any(1) | boxes[:, :, -1].any(1)).all()  # bottom, left or right


def test_config_keys_are_checked():
    with pytest.raises(ConfigError, match="INPUT.OCCLUDE_PROB"):
        load_config(None, ["INPUT.OCCLUDE_PROB", "1.5"])
    with pytest.raises(ConfigError, match="INPUT.OCCLUDE_KINDS"):
        load_config(None, ["INPUT.OCCLUDE_KINDS", "['person', 'umbrella']"])
    with pytest.raises(ConfigError, match="INPUT.OCCLUDE_COVERAGE"):
        load_config(None, ["INPUT.OCCLUDE_COVERAGE", "[0.6, 0.2]"])
    with pytest.raises(ConfigError, match="INPUT.HIDE_PROB"):
        load_config(None, ["INPUT.HIDE_PROB", "-0.1"])


@pytest.mark.parametrize("model", ["pfd", "vit_baseline"])
def test_trainer_trains_with_occluders_and_evaluates_unoccluded(data_root, tmp_path, model):
    """Both models take a step on occluded batches; the evaluation (same initial weights) is the one of
    a run without occluders: evaluation images never go through the occluder."""
    on = Trainer(tiny_config(data_root, tmp_path / "on", "MODEL.NAME", model, "INPUT.OCCLUDE_PROB", "1.0"))
    off = Trainer(tiny_config(data_root, tmp_path / "off", "MODEL.NAME", model, "INPUT.HIDE_PROB", "0"))
    try:
        assert off.occluder is None and on.occluder is not None
        on_eval, off_eval = on.evaluate(0), off.evaluate(0)
        for name in off_eval:
            assert on_eval[name]["mAP"] == off_eval[name]["mAP"]
        on.train_model.train()
        totals: dict = {}
        assert on.train_step(next(iter(on.train_loader)), totals) == on.cfg.SOLVER.IMS_PER_BATCH
        assert all(torch.isfinite(v) for v in totals.values())
    finally:
        on.close()
        off.close()
