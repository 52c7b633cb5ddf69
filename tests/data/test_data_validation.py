"""DATASETS.VAL_IDS: identities held out of the training set, deterministic from the seed."""
import pytest

from pfd.data.datasets import DatasetError, build_dataset
from pfd.data.validation import hold_out_validation


@pytest.fixture(scope="module")
def dataset(data_root):
    return build_dataset("synthetic", data_root)


def test_held_out_ids_are_never_trained_on(dataset):
    train, val = hold_out_validation(dataset, 4, seed=1234)
    assert val.name == "synthetic:val" and val.train == []
    assert len(val.query) == 4 and len({r.pid for r in val.query}) == 4  # one query per held-out id
    held = {r.pid for r in val.query}
    assert {r.pid for r in val.gallery} == held
    originals = {r.path: r.pid for r in dataset.train}
    val_paths = {r.path for r in (*val.query, *val.gallery)}
    assert sum(originals[p] in held for p in originals) == len(val_paths)  # every image of a held-out id, once
    assert not val_paths & {r.path for r in train.train}
    assert sorted({r.pid for r in train.train}) == list(range(12))  # relabelled 0..M-1
    assert train.num_train_pids == 12 and train.query == dataset.query and train.gallery == dataset.gallery
    for q in val.query:  # a match in another camera exists for every query
        assert any(g.pid == q.pid and g.camid != q.camid for g in val.gallery)


def test_split_is_a_function_of_the_seed(dataset):
    first, again, other = (hold_out_validation(dataset, 4, seed=s)[1] for s in (1234, 1234, 7))
    assert first.query == again.query and first.gallery == again.gallery
    assert {r.path for r in first.query} != {r.path for r in other.query}


def test_too_many_held_out_ids_is_an_error_before_training(dataset):
    with pytest.raises(DatasetError, match=r"DATASETS.VAL_IDS 17: synthetic has 16 training identities"):
        hold_out_validation(dataset, 17, seed=0)
    with pytest.raises(DatasetError, match=r"DATASETS.VAL_IDS 14 leaves 2 of 16 training identities.*at least 4"):
        hold_out_validation(dataset, 14, seed=0, min_train_ids=4)
