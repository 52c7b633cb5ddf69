"""Training the learned pose estimator (pfd-train-pose): its targets, its occluders, a whole run on tiny data."""
import json

import pytest
import torch

from pfd.cli import train_pose
from pfd.data.occlude.augment import BatchOccluder
from pfd.engine.pose_training import PoseTrainSettings, _augment, pose_losses
from pfd.errors import InvalidInputError
from pfd.image import read_image
from pfd.pose.keypoints import flip_keypoints
from pfd.pose.learned import FORMAT, INPUT_HW, LearnedPoseEstimator, read_learned_pose

from engine_tiny import DEMO_CONFIG, exit_status, tiny_opts

H, W = INPUT_HW[0] // 4, INPUT_HW[1] // 4  # the location map


def peaked(keypoints: torch.Tensor, strength: float = 3.0) -> torch.Tensor:
    """Location logits [B, 17, h, w] peaking at each keypoint's map pixel."""
    logits = torch.zeros(*keypoints.shape[:2], H, W)
    ix = ((keypoints[..., 0] + 0.5) / 4 - 0.5).round().long()
    iy = ((keypoints[..., 1] + 0.5) / 4 - 0.5).round().long()
    logits.view(-1, H * W)[torch.arange(ix.numel()), (iy * W + ix).flatten()] = strength
    return logits


def losses(location, seen, keypoints, placed, occluder=None, covered=None):
    """pose_losses with, unless given, an occluder map of logit 0 and nothing covered."""
    occluder = torch.zeros(location.shape[0], 1, H, W) if occluder is None else occluder
    covered = torch.zeros(location.shape[0], *INPUT_HW, dtype=torch.bool) if covered is None else covered
    return pose_losses(location, seen, occluder, keypoints, placed, covered)


def test_the_location_loss_rewards_the_teachers_place_and_ignores_keypoints_it_did_not_place():
    kps = torch.tensor([[[10.0, 20.0, 1.0]] * 17])  # [1, 17, 3] input pixels
    placed = torch.ones(1, 17, dtype=torch.bool)
    half = torch.full((1, 17), 0.5)
    right = losses(peaked(kps), half, kps, placed)[0]
    near = losses(peaked(kps + torch.tensor([4.0, 0.0, 0.0])), half, kps, placed)[0]
    wrong = losses(peaked(kps + torch.tensor([30.0, 60.0, 0.0])), half, kps, placed)[0]
    assert right < near < wrong
    placed[0, 3:] = False  # only the first three are targets: the others' logits change nothing
    moved = peaked(kps)
    moved[0, 3:] = peaked(kps + torch.tensor([30.0, 60.0, 0.0]))[0, 3:]
    assert torch.isclose(losses(moved, half, kps, placed)[0], losses(peaked(kps), half, kps, placed)[0])


def test_the_visibility_target_is_placed_and_not_covered():
    kps = torch.tensor([[[10.0, 20.0, 1.0]] * 17])
    kps[0, 5:10, 2] = 0.0  # covered by an occluder
    placed = torch.ones(1, 17, dtype=torch.bool)
    placed[0, 15:] = False  # the teacher did not place these
    seen = torch.full((1, 17), 0.001)
    seen[0, :5] = seen[0, 10:15] = 0.999
    assert losses(peaked(kps), seen, kps, placed)[1] < 0.01
    assert losses(peaked(kps), 1 - seen, kps, placed)[1] > 5


def test_the_occluder_map_is_fitted_to_the_covered_share_of_each_cell():
    kps = torch.tensor([[[10.0, 20.0, 1.0]] * 17])
    placed, seen = torch.ones(1, 17, dtype=torch.bool), torch.full((1, 17), 0.5)
    covered = torch.zeros(1, *INPUT_HW, dtype=torch.bool)
    covered[0, 64:, :] = True  # the bottom half
    right = torch.full((1, 1, H, W), -9.0)
    right[..., H // 2:, :] = 9.0
    assert losses(peaked(kps), seen, kps, placed, right, covered)[2] < 0.01
    assert losses(peaked(kps), seen, kps, placed, -right, covered)[2] > 5


def test_covered_keypoints_stay_location_targets_but_are_taught_hidden():
    """On black crops every pasted pixel shows: a keypoint is taught hidden exactly where the patch lies, and
    keeps its place (mirrored with its crop or not) as a location target."""
    torch.manual_seed(0)
    occluder = BatchOccluder(1.0, ("patch",), (0.3, 0.6), INPUT_HW, (0.5,) * 3, (0.5,) * 3)
    ys, xs = torch.meshgrid(torch.linspace(2, 125, 17), torch.linspace(2, 61, 17), indexing="ij")
    kps = torch.stack([xs.diagonal(), ys.diagonal(), torch.ones(17)], -1).repeat(16, 1, 1)  # [16, 17, 3] a diagonal
    images = torch.zeros(16, 3, *INPUT_HW, dtype=torch.uint8)
    x, out, placed, covered = _augment(images, kps, torch.arange(16), occluder)
    assert placed.all()
    pasted = (x != -1).any(1)  # [16, H, W]
    assert torch.equal(covered, pasted)  # the occluder map's target: exactly what was pasted
    xy = out[..., :2].round().long()
    covered = pasted[torch.arange(16).view(-1, 1), xy[..., 1], xy[..., 0]]  # [16, 17]
    assert covered.any() and not covered.all()
    assert torch.equal(out[..., 2] == 0, covered)
    mirrored = flip_keypoints(kps, INPUT_HW[1])
    same = (out[..., :2] == kps[..., :2]).all(-1).all(-1) | (out[..., :2] == mirrored[..., :2]).all(-1).all(-1)
    assert same.all()


def test_a_bad_setting_is_refused_before_any_image_is_read():
    with pytest.raises(InvalidInputError, match="--batch-size must be at least 2"):
        PoseTrainSettings(batch_size=1).check()
    with pytest.raises(InvalidInputError, match="--occlude-prob must be in"):
        PoseTrainSettings(occlude_prob=1.5).check()
    with pytest.raises(InvalidInputError, match="--visibility-weight must be > 0"):
        PoseTrainSettings(visibility_weight=0).check()


def test_train_pose_writes_an_estimator_the_learned_backend_loads_and_replaces_only_its_own(data_root, tmp_path,
                                                                                               capsys):
    """Teacher: the tiny synthetic set's own keypoints. One epoch, then a second run replaces the file."""
    out = tmp_path / "learned.pth"
    argv = ["--config", str(DEMO_CONFIG), "--out", str(out), "--epochs", "1", "--batch-size", "32",
            *tiny_opts(data_root, tmp_path / "run")]
    assert exit_status(train_pose.main, argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["epoch"] == 1 and rows[1]["weights"] == str(out)
    net, meta = read_learned_pose(out)
    assert meta["format"] == FORMAT and meta["epochs_done"] == 1 and meta["teacher"] == "synthetic"
    assert meta["crops"] == 128 and len(meta["history"]) == 1 and meta["settings"]["seed"] == 0
    image = read_image(next((data_root / "synthetic" / "query").glob("*.jpg")))
    assert LearnedPoseEstimator(out).predict([image]).shape == (1, 17, 3)
    before = out.read_bytes()
    assert exit_status(train_pose.main, [*argv, "--seed", "1"]) == 0  # its own file: replaced
    assert out.read_bytes() != before and read_learned_pose(out)[1]["settings"]["seed"] == 1
    capsys.readouterr()
    assert exit_status(train_pose.main, [*argv, "MODEL.POSE_BACKEND", "learned"]) == 2
    assert "the teacher cannot be the learned estimator" in capsys.readouterr().err
