"""PK / shuffled samplers and the train / test loaders built on them."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pfd.config import ConfigError, load_config
from pfd.data.datasets import DatasetError, build_dataset
from pfd.data.loader import build_test_loader, build_train_loader, check_train_split
from pfd.data.samplers import PKSampler, ShuffledSampler
from pfd.image import ImageReadError

# 12 identities with 1..9 images each (several with fewer than K = 4)
PIDS = [pid for pid in range(12) for _ in range(1 + (pid * 5) % 9)]


def batches_of(sampler: PKSampler) -> list[list[tuple[int, int]]]:
    items = list(sampler)
    size = sampler.batch_size
    assert len(items) == len(sampler) and len(items) % size == 0
    return [items[i:i + size] for i in range(0, len(items), size)]


def test_pk_batch_structure():
    sampler = PKSampler(PIDS, batch_size=12, num_instances=4, seed=5)
    batches = batches_of(sampler)
    chunks = sum(max(1, n // 4) for n in Counter(PIDS).values())
    assert len(batches) == chunks // 3
    for batch in batches:
        pids = [PIDS[i] for i, _ in batch]
        groups = [pids[j:j + 4] for j in range(0, 12, 4)]  # P = 3 groups of K = 4
        assert all(len(set(g)) == 1 for g in groups)
        assert len({g[0] for g in groups}) == 3  # distinct identities per batch
    seeds = [seed for batch in batches for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every sample gets its own augmentation seed


def test_pk_epoch_uses_every_image_once():
    pids = [p for p in range(12) for _ in range(8)]  # 24 chunks of K = 4 -> 8 batches of P = 3
    for seed in range(5):
        sampler = PKSampler(pids, 12, 4, seed=seed)
        indices = [i for i, _ in sampler]
        assert len(indices) == 96 and len(set(indices)) >= 0.95 * 96


def test_pk_determinism_and_epochs():
    a = PKSampler(PIDS, 12, 4, seed=5)
    b = PKSampler(PIDS, 12, 4, seed=5)
    assert list(a) == list(b) and list(a) == list(a)  # (index, augmentation seed) pairs
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(PKSampler(PIDS, 12, 4, seed=6)) != first


def test_pk_distributed_shares():
    world = 2
    for epoch in (0, 3):
        ranks = [PKSampler(PIDS, 6, 3, seed=1, rank=r, world_size=world) for r in range(world)]
        for s in ranks:
            s.set_epoch(epoch)
        batches = [batches_of(s) for s in ranks]
        assert len(batches[0]) == len(batches[1]) > 0  # same number of batches on every rank
        pid_sets = [{PIDS[i] for batch in bs for i, _ in batch} for bs in batches]
        assert not pid_sets[0] & pid_sets[1]  # disjoint identities
        for bs in batches:
            for batch in bs:
                pids = [PIDS[i] for i, _ in batch]
                assert pids[0] == pids[2] != pids[3] == pids[5]


def test_pk_errors():
    with pytest.raises(ValueError, match="multiple of DATALOADER.NUM_INSTANCE=4"):
        PKSampler(PIDS, 10, 4)
    with pytest.raises(ValueError, match="at least 16 identities.*has 12"):
        PKSampler(PIDS, 32, 4, world_size=2)


def test_shuffled_sampler():
    s = ShuffledSampler(11, seed=3)
    order = [i for i, _ in s]
    assert sorted(order) == list(range(11)) and order == [i for i, _ in s]
    s.set_epoch(1)
    assert [i for i, _ in s] != order
    shards = [[i for i, _ in ShuffledSampler(11, seed=3, rank=r, world_size=2)] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])


# ---------------------------------------------------------------------------- loaders

def make_market(root: Path) -> Path:
    """6 train ids x 4 images (each image a distinct flat colour), 2 query, 2 gallery."""
    rng = np.random.default_rng(0)
    names = {"bounding_box_train": [f"{p:04d}_c{1 + i % 3}s1_{i:06d}_00.jpg" for p in range(1, 7) for i in range(4)],
             "query": ["0010_c1s1_000001_00.jpg", "0011_c1s1_000001_00.jpg"],
             "bounding_box_test": ["0010_c2s1_000001_00.jpg", "0011_c2s1_000001_00.jpg"]}
    for sub, files in names.items():
        (root / sub).mkdir(parents=True)
        for name in files:
            Image.new("RGB", (16, 32), tuple(int(v) for v in rng.integers(0, 256, 3))).save(root / sub / name)
    return root


def loader_cfg(*opts):
    return load_config(None, ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "INPUT.PADDING", "2",
                              "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2",
                              "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "3", *opts])


def epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_train_loader_samples(tmp_path):
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)
    first = ds.train[0].path
    table = {first: np.tile(np.array([[8.0, 16.0, 0.9]], dtype=np.float32), (17, 1))}
    loader = build_train_loader(loader_cfg("INPUT.PROB", "0", "INPUT.RE_PROB", "0"), ds, table)
    assert loader.drop_last and loader.batch_size == 8 and len(loader) == 3  # 12 chunks of K=2, P=4 per batch
    batches = epoch_batches(loader, 0)
    assert len(batches) == 3
    for batch in batches:
        assert batch["image"].shape == (8, 3, 32, 16) and batch["keypoints"].shape == (8, 17, 3)
        assert batch["pid"].dtype == batch["camid"].dtype == batch["index"].dtype == torch.int64
        assert torch.equal(batch["pid"], torch.tensor([ds.train[i].pid for i in batch["index"]]))
        assert len(set(batch["pid"].tolist())) == 4 and "path" not in batch
        for kp, index in zip(batch["keypoints"], batch["index"]):
            if ds.train[index].path == first:  # looked up by path; x, y moved by the random crop only
                assert (kp[:, 2] == 0.9).all() and (kp[:, 0] - 8).abs().max() <= 2
            else:  # no keypoints: every part occluded
                assert (kp[:, 2] == 0).all()


def test_train_loader_reproducible_across_workers(tmp_path):
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)
    cfg = loader_cfg("INPUT.PROB", "0.5", "INPUT.RE_PROB", "0.5")
    serial = epoch_batches(build_train_loader(cfg, ds, None), 1)
    parallel_loader = build_train_loader(loader_cfg("DATALOADER.NUM_WORKERS", "2", "INPUT.PROB", "0.5",
                                                    "INPUT.RE_PROB", "0.5"), ds, None)
    assert parallel_loader.persistent_workers
    parallel = epoch_batches(parallel_loader, 1)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
    other = epoch_batches(parallel_loader, 2)
    assert not all(torch.equal(a["image"], b["image"]) for a, b in zip(serial, other))


def test_train_loader_distributed_and_softmax(tmp_path):
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)
    loaders = [build_train_loader(loader_cfg(), ds, None, rank=r, world_size=2) for r in range(2)]
    assert [ld.batch_size for ld in loaders] == [4, 4] and len(loaders[0]) == len(loaders[1])
    pids = [{int(p) for b in epoch_batches(ld, 0) for p in b["pid"]} for ld in loaders]
    assert not pids[0] & pids[1]
    plain = build_train_loader(loader_cfg("DATALOADER.SAMPLER", "softmax"), ds, None, seed=9)
    indices = torch.cat([b["index"] for b in epoch_batches(plain, 0)])
    assert len(indices) == 24 and sorted(indices.tolist()) == list(range(24))
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        build_train_loader(loader_cfg(), ds, None, world_size=3)


def test_test_loader_in_order_with_paths(tmp_path):
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)
    records = ds.query + ds.gallery
    batches = list(build_test_loader(loader_cfg(), records, {}))
    assert [len(b["path"]) for b in batches] == [3, 1]
    assert [p for b in batches for p in b["path"]] == [r.path for r in records]
    assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2, 3]
    first, again = batches[0]["image"], list(build_test_loader(loader_cfg(), records, None))[0]["image"]
    assert torch.equal(first, again)  # no randomness at test time


def test_test_only_dataset_cannot_train(tmp_path):
    for sub in ("Probe", "Gallery"):
        (tmp_path / "Partial_iLIDS" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 16)).save(tmp_path / "Partial_iLIDS" / sub / "1.jpg")
    with pytest.raises(ValueError, match="partial_ilids has no training split"):
        build_train_loader(loader_cfg(), build_dataset("partial_ilids", tmp_path), None)


def test_corrupt_image_in_worker_names_path(tmp_path):
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)
    bad = Path(ds.query[1].path)
    bad.write_bytes(b"garbage")
    loader = build_test_loader(loader_cfg("DATALOADER.NUM_WORKERS", "1"), ds.query, None)
    with pytest.raises(ImageReadError, match=f"cannot decode image {bad}"):
        list(loader)


def test_too_few_identities_for_a_batch_fail_before_the_loader(tmp_path):
    """Issue 23: a dataset with fewer identities than a PK batch takes is refused by check_train_split
    (which the trainer runs as soon as the dataset is parsed), naming the dataset and the counts."""
    ds = build_dataset(f"folder:{make_market(tmp_path / 'm')}", tmp_path)  # 6 training identities
    assert check_train_split(loader_cfg(), ds) == 8
    with pytest.raises(DatasetError, match=r"6 training identities, but a PK batch of SOLVER\.IMS_PER_BATCH=16 takes "
                                           r"8 .*lower SOLVER\.IMS_PER_BATCH to at most 12"):
        check_train_split(loader_cfg("SOLVER.IMS_PER_BATCH", "16"), ds)
    with pytest.raises(DatasetError, match=r"4 training identities \(after the 2 DATASETS\.VAL_IDS held out\)"):
        check_train_split(loader_cfg("SOLVER.IMS_PER_BATCH", "10", "DATASETS.VAL_IDS", "2"), ds)
    with pytest.raises(DatasetError, match=r"24 training images make no full batch of SOLVER\.IMS_PER_BATCH=32"):
        check_train_split(loader_cfg("DATALOADER.SAMPLER", "softmax", "SOLVER.IMS_PER_BATCH", "32"), ds)
    with pytest.raises(ConfigError, match=r"batches of 2, not a multiple of DATALOADER\.NUM_INSTANCE=4"):
        check_train_split(loader_cfg("SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "4"), ds, world_size=4)
