"""MODEL.POSE_ONLINE: HRNet runs on every augmented batch in training and evaluation (no pose cache)."""
import json

import pytest
import torch

from pfd.engine.tester import protocol_warning
from pfd.engine.trainer import Trainer
from pfd.model import build_model
from pfd.pose.hrnet import build_hrnet

from engine_tiny import DEMO_CONFIG, load_script, make_data, reference_layout, tiny_config, tiny_opts

RESTORING_KEYS = ("MODEL.POSE_ONLINE true", "MODEL.POSE_WEIGHT", "MODEL.POSE_ARCH hrnet_w48",
                  "MODEL.POSE_INPUT_NORM reference")


@pytest.mark.slow
def test_train_and_test_with_online_hrnet(tmp_path):
    data_root = make_data(tmp_path / "data")
    weights = tmp_path / "pose_hrnet_w32_random.pth"
    torch.save(build_hrnet("hrnet_w32").state_dict(), weights)
    online = ["MODEL.POSE_ONLINE", "true", "MODEL.POSE_ARCH", "hrnet_w32", "MODEL.POSE_WEIGHT", str(weights),
              "SOLVER.MAX_EPOCHS", "1", "SOLVER.EVAL_PERIOD", "1"]
    trainer = Trainer(tiny_config(data_root, tmp_path / "run", *online))
    assert trainer.heatmaps.online is not None and all(t.keypoints is None for t in trainer.test_sets)
    hrnet_before = {k: v.clone() for k, v in trainer.heatmaps.online.state_dict().items()}
    metrics = trainer.fit()["synthetic"]
    assert 0 <= metrics["mAP"] <= 1
    for key, value in trainer.heatmaps.online.state_dict().items():  # frozen: not trained, BN stats untouched
        assert torch.equal(value, hrnet_before[key]), key
    assert not (data_root / "pose_cache").exists()  # no keypoints were computed or cached

    out = tmp_path / "test"
    load_script("test").main(["--config", str(DEMO_CONFIG),
                              *tiny_opts(data_root, out, *online, "TEST.WEIGHT", str(tmp_path / "run" / "last.pth"))])
    assert json.loads((out / "metrics.json").read_text())["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)


def test_test_py_warns_when_a_reference_checkpoint_meets_cached_poses(tmp_path, capsys):
    data_root = make_data(tmp_path / "data")
    cfg = tiny_config(data_root, tmp_path / "unused")
    torch.manual_seed(0)
    weights = tmp_path / "pfd_reference_layout.pth"
    torch.save({"state_dict": reference_layout(build_model(cfg, 16, 6).state_dict())}, weights)
    out = tmp_path / "test"
    load_script("test").main(["--config", str(DEMO_CONFIG), *tiny_opts(data_root, out, "TEST.WEIGHT", str(weights))])
    for text in (capsys.readouterr().err, (out / "log.txt").read_text()):
        assert "not the released model's protocol" in text and "cached Gaussian poses" in text
        assert all(key in text for key in RESTORING_KEYS), text


def test_protocol_warning_only_for_reference_checkpoints_off_protocol(tmp_path):
    online = ["MODEL.POSE_ONLINE", "true", "MODEL.POSE_WEIGHT", "w48.pth"]
    cached = tiny_config(tmp_path, tmp_path)
    assert protocol_warning(cached, "pfd") is None  # our own checkpoints were trained on what the config says
    assert "cached Gaussian poses" in protocol_warning(cached, "reference_pfd")
    assert protocol_warning(tiny_config(tmp_path, tmp_path, *online), "reference_pfd") is None
    renormalized = protocol_warning(tiny_config(tmp_path, tmp_path, *online, "MODEL.POSE_INPUT_NORM", "imagenet"),
                                    "reference_pfd")
    assert "MODEL.POSE_INPUT_NORM imagenet" in renormalized and all(k in renormalized for k in RESTORING_KEYS)
