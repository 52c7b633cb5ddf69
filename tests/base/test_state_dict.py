"""The one weight-file reader and strict loader (model, pose and engine all load through them)."""
import pytest
import torch
from torch import nn

from pfd.device import resolve_device
from pfd.errors import InvalidInputError, UserError
from pfd.state_dict import load_state_dict_strict, load_torch_file, read_state_dict


def test_read_unwraps_wrappers_and_prefixes_and_names_bad_files(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": {"_orig_mod.module.a": torch.ones(2)}, "epoch": 3}, path)
    assert list(read_state_dict(path)) == ["a"]
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: expected a state dict, got list"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match=r"empty\.pth: no tensors found"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_state_dict(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy pickle"])
def test_a_pickled_model_is_named_as_such(tmp_path, legacy):
    pickled = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), pickled, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(InvalidInputError, match=r"model\.pth .*Python objects that weights_only loading refuses"):
        load_torch_file(pickled)


def test_a_damaged_checkpoint_is_not_taken_for_a_pickled_model(tmp_path):
    weights, damaged = tmp_path / "weights.pth", tmp_path / "damaged.pth"
    torch.save(nn.Linear(2, 2).state_dict(), weights)
    damaged.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(InvalidInputError, match=r"damaged\.pth .*a damaged or truncated PyTorch file"):
        load_torch_file(damaged)


def test_strict_load_reports_every_misfit_before_copying():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: torch.full_like(v, 2) for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(5, 3)
    del state["1.running_var"]
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_state_dict_strict(model, state, "w.pth", "the test model (CFG.KEY)")
    message = str(err.value)
    assert message.startswith("w.pth does not fit the test model (CFG.KEY)")
    assert "missing: 1.running_var" in message and "unexpected: 2.weight" in message
    assert "wrong shape: 0.weight: file (5, 3) vs model (4, 3)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing copied


def test_strict_load_can_skip_and_return_extra_keys():
    model = nn.Linear(3, 4)
    state = {k: torch.full_like(v, 2) for k, v in model.state_dict().items()} | {"blocks.9.weight": torch.ones(1)}
    with pytest.raises(ValueError, match=r"unexpected: blocks\.9\.weight"):
        load_state_dict_strict(model, state, "w.pth", "a Linear")
    assert load_state_dict_strict(model, state, "w.pth", "a Linear", allow_unexpected=True) == ["blocks.9.weight"]
    assert torch.equal(model.weight, torch.full((4, 3), 2.0))


def test_device_resolver(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="MODEL.DEVICE='cuda:0' but CUDA is not available"):
            resolve_device("cuda")  # one line from the commands, not a traceback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda:3")  # torchrun's rank picks the GPU
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda:1")
    with pytest.raises(UserError, match="MODEL.DEVICE='cuda:4' but this machine has 4 CUDA device"):
        resolve_device("cuda:4")
