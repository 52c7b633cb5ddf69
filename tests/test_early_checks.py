"""Issue 23's late checks, through train.py in this process: one line on stderr, exit status 2, before
the pose pass or any training (a tiny synthetic set; nothing trains)."""
import pytest
import torch
from engine_tiny import DEMO_CONFIG, exit_status, load_script, make_data, tiny_opts

train_script = load_script("train")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("early"))


def run_train(capsys, data_root, out, *extra):
    status = exit_status(train_script.main, ["--config", str(DEMO_CONFIG), *tiny_opts(data_root, out, *extra)])
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def test_too_few_identities_fail_before_the_pose_pass(capsys, data_root, tmp_path):
    status, err = run_train(capsys, data_root, tmp_path / "run", "SOLVER.IMS_PER_BATCH", "128")
    assert status == 2
    assert err[-1].startswith("error: dataset synthetic: 16 training identities, but a PK batch of "
                              "SOLVER.IMS_PER_BATCH=128 takes 32")
    assert not any("Traceback" in line for line in err)
    assert not list((data_root / "pose_cache").glob("*"))  # the pose pass never ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_device_without_cuda_is_one_line(capsys, data_root, tmp_path):
    status, err = run_train(capsys, data_root, tmp_path / "run", "MODEL.DEVICE", "cuda")
    assert status == 2
    assert err == ["error: MODEL.DEVICE='cuda:0' but CUDA is not available; use MODEL.DEVICE cpu or auto"]
