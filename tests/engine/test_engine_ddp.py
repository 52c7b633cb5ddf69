"""Two-process DDP training on CPU (gloo): identical weights on both ranks, gathered evaluation equal
to a single-process test.py run of the saved checkpoint."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from engine_tiny import DEMO_CONFIG, load_script, make_data, tiny_config, tiny_opts

test_script = load_script("test")


WORLD_SIZE = 2
RUN = ["SOLVER.MAX_EPOCHS", "1", "SOLVER.EVAL_PERIOD", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, data_root, out, port: int) -> None:
    """One torchrun-like process: environment, train, then dump its own parameters."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)
    from pfd.distributed import cleanup
    from pfd.engine.checkpoint import unwrap_model
    from pfd.engine.trainer import Trainer

    trainer = Trainer(tiny_config(data_root, out, *RUN))
    metrics = trainer.fit()
    params = {k: v.detach().clone() for k, v in unwrap_model(trainer.model).named_parameters()}
    mean_ap = float(metrics["synthetic"]["mAP"]) if metrics else None
    torch.save({"params": params, "mAP": mean_ap, "steps": len(trainer.train_loader)},
               data_root / f"rank{rank}.pt")
    cleanup()


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    data_root = make_data(tmp_path)
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(data_root, out, _free_port()), nprocs=WORLD_SIZE, join=True)

    rank0 = torch.load(data_root / "rank0.pt", weights_only=True)
    rank1 = torch.load(data_root / "rank1.pt", weights_only=True)
    assert rank0["steps"] == rank1["steps"] > 0  # each rank: its own share of identities, same number of steps
    assert rank0["params"].keys() == rank1["params"].keys()
    for key, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][key]), key
    assert rank1["mAP"] is None and rank0["mAP"] is not None  # only rank 0 computes metrics, writes files
    assert sorted(p.name for p in out.glob("*.pth")) == ["epoch_001.pth", "last.pth"]  # no validation split: no best

    # The evaluation gathered from both ranks equals a single-process evaluation of the checkpoint.
    test_out = tmp_path / "test"
    test_script.main(["--config", str(DEMO_CONFIG),
                      *tiny_opts(data_root, test_out, "TEST.WEIGHT", str(out / "last.pth"))])
    metrics = json.loads((test_out / "metrics.json").read_text())
    assert abs(metrics["mAP"] - rank0["mAP"]) < 1e-6
    assert metrics["num_query"] == 24
