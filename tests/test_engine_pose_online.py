"""MODEL.POSE_ONLINE: HRNet runs on every augmented batch in training and evaluation (no pose cache)."""
import json

import pytest
import torch
from engine_tiny import DEMO_CONFIG, load_script, make_data, tiny_config, tiny_opts

from pfd.engine.trainer import Trainer
from pfd.pose.hrnet import build_hrnet


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
