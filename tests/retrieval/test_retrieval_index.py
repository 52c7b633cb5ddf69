"""Ranking equals a full sort; saved index round trip, IVF-PQ recall, and clear load errors.
(Index kinds, adds, removals, the folder guard and kills during a save: test_gallery_growth.py.)"""
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pfd.retrieval import build_index, distance_matrix, load_index, rank_gallery, save_index
from pfd.retrieval.index_folder import INDEX_FILE, MANIFEST_FILE, META_FILE, IndexLoadError

pytestmark = pytest.mark.usefixtures("single_faiss_thread")


def features(rng, n, dim=32):
    return rng.normal(size=(n, dim)).astype(np.float32)


def records(n):
    return [SimpleNamespace(path=f"/data/g/{i:04d}.jpg", pid=i // 4, camid=i % 3) for i in range(n)]


def test_distance_matrix_is_two_minus_two_cos_and_squared_l2():
    rng = np.random.default_rng(0)
    q, g = features(rng, 5), features(rng, 7)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(distance_matrix(q, g).numpy(), 2 - 2 * qn @ gn.T, atol=1e-5)
    sq = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(distance_matrix(q, g, normalize=False).numpy(), sq, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="dim 32 but gallery features have dim 8"):
        distance_matrix(q, features(rng, 3, dim=8))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("normalize", [True, False])
def test_rank_gallery_equals_full_sort(backend, normalize):
    rng = np.random.default_rng(1)
    q, g = features(rng, 20), features(rng, 300)
    full = distance_matrix(q, g, normalize=normalize).numpy()
    order = np.argsort(full, axis=1, kind="stable")[:, :15]
    dist, idx = rank_gallery(q, g, topk=15, normalize=normalize, backend=backend)
    assert idx.dtype == np.int64 and dist.dtype == np.float32 and idx.shape == (20, 15)
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(full, order, 1), rtol=1e-4, atol=1e-4)
    _, all_rows = rank_gallery(torch.from_numpy(q), torch.from_numpy(g), topk=1000, backend=backend)
    assert all_rows.shape == (20, 300)  # topk is cut to the gallery size


def test_flat_index_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    gallery = features(rng, 120)
    index = build_index(gallery, records(120), model_id="ckpt-sha", config_hash="abc123", feature_kind="full")
    folder = save_index(index, tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == [".pfd-output.json", MANIFEST_FILE, "v0001"]
    assert sorted(p.name for p in (folder / "v0001").iterdir()) == [INDEX_FILE, META_FILE]  # no temp files left
    loaded = load_index(folder, config_hash="abc123", model_id="ckpt-sha")
    meta = loaded.meta
    assert (meta["index_type"], meta["feature_dim"], meta["num_items"], meta["feature_kind"]) == ("flat", 32, 120,
                                                                                                    "full")
    assert meta["paths"][7] == "/data/g/0007.jpg" and meta["pids"][7] == 1 and meta["camids"][7] == 1
    queries = gallery[[3, 50]] + 0.01 * features(rng, 2)
    dist, rows = loaded.search(queries, topk=5)
    exact_dist, exact_rows = rank_gallery(queries, gallery, topk=5, backend="faiss")
    np.testing.assert_array_equal(rows, exact_rows)
    assert rows[:, 0].tolist() == [3, 50]
    np.testing.assert_allclose(dist, exact_dist, atol=1e-5)
    with pytest.raises(ValueError, match="dim 8 but the index holds dim 32"):
        loaded.search(features(rng, 1, dim=8))


def test_ivfpq_builds_and_reports_recall(tmp_path):
    rng = np.random.default_rng(3)
    centers = features(rng, 100, dim=32)  # ~10 images per identity, as in re-ID galleries
    gallery = (centers[rng.integers(0, 100, 1000)] + 0.3 * features(rng, 1000, dim=32)).astype(np.float32)
    index = build_index(gallery, records(1000), index_type="ivfpq", config_hash="h")
    params, recall = index.meta["params"], index.meta["recall_at_10"]
    assert 32 % params["m"] == 0 and 1 <= params["nprobe"] <= params["nlist"] <= 1000 // 39
    assert 2 ** params["nbits"] <= 1000
    loaded = load_index(save_index(index, tmp_path / "i"), config_hash="h")
    assert loaded.meta["index_type"] == "ivfpq" and loaded.meta["recall_at_10"] == recall
    # The reported recall is the overlap with the exact top-10 (all 1,000 gallery vectors as probes).
    _, rows = loaded.search(gallery, topk=10)
    _, exact = rank_gallery(gallery, gallery, topk=10, backend="faiss")
    overlap = (rows[:, :, None] == exact[:, None, :]).any(-1).mean()
    assert recall == pytest.approx(overlap, abs=1e-3)
    assert 0.6 < recall <= 1.0  # far above chance (0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning for the slots the probed lists cannot fill
        dist, rows = loaded.search(gallery[:5], topk=1000)
    assert (rows < 0).any() and np.isinf(dist[rows < 0]).all() and np.isfinite(dist[rows >= 0]).all()


def test_ivfpq_skips_polysemous_training_which_changes_no_ranking():
    """index_factory turns polysemous training on; it only serves a Hamming pre-filter we never use."""
    import faiss

    rng = np.random.default_rng(4)
    gallery = features(rng, 600, dim=32)
    index = build_index(gallery, records(600), index_type="ivfpq", seed=5)
    ivf = faiss.downcast_index(faiss.try_extract_index_ivf(index.index))
    assert ivf.do_polysemous_training is False and ivf.pq.cp.seed == 5 == ivf.cp.seed  # the seed reaches both
    results = []
    for polysemous in (True, False):  # the same factory string and seeds, trained both ways
        twin = faiss.index_factory(32, index.meta["factory"], faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.try_extract_index_ivf(twin))
        ivf.do_polysemous_training, ivf.nprobe = polysemous, index.meta["params"]["nprobe"]
        twin.train(gallery)
        twin.add(gallery)
        results.append(twin.search(gallery[:50], 10))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0], results[1][0])


def test_a_factory_chain_ending_in_a_transform_without_training_trains_the_rest():
    """factory:PCA16,L2norm,...: the PCA learns before any row goes through the chain (a traceback once)."""
    rng = np.random.default_rng(5)
    gallery = features(rng, 400, dim=32)
    index = build_index(gallery, records(400), index_type="factory:PCA16,L2norm,IVF4,Flat")
    _, rows = index.search(gallery[:20], topk=1)
    assert (rows[:, 0] == np.arange(20)).mean() >= 0.9  # each image finds itself through the reduced space


@pytest.mark.parametrize("normalize", [True, False])
def test_pca_output_is_normalized_again_only_for_cosine_ranking(normalize):
    """PCA centres the features: cosine ranking needs the reduced vectors normalized again; L2 ranking does not."""
    rng = np.random.default_rng(6)
    gallery = features(rng, 600, dim=32)
    index = build_index(gallery, records(600), index_type="pca+ivfpq", normalize=normalize,
                        ivfpq_params={"d_out": 16, "m": 4})
    assert (",L2norm," in index.meta["factory"]) is normalize and index.meta["factory"].startswith("PCA16,")
    _, rows = index.search(gallery[:20], topk=1)
    assert (rows[:, 0] == np.arange(20)).mean() >= 0.8


def test_load_errors_name_file_and_mismatch(tmp_path):
    rng = np.random.default_rng(4)
    folder = save_index(build_index(features(rng, 30), records(30), model_id="m1", config_hash="cfg1"), tmp_path / "i")
    with pytest.raises(IndexLoadError, match=r"config_hash='cfg1' but the caller has config_hash='cfg2'"):
        load_index(folder, config_hash="cfg2")
    with pytest.raises(IndexLoadError, match="model_id='m1'"):
        load_index(folder, model_id="m2")
    with pytest.raises(IndexLoadError, match=f"{tmp_path / 'empty' / MANIFEST_FILE} is missing"):
        load_index(tmp_path / "empty")
    with pytest.raises(IndexLoadError, match=r"python query\.py index"):
        load_index(tmp_path / "empty")

    # Files of another index put in place of this one's: refused by the manifest's checksums.
    other = save_index(build_index(features(rng, 30), records(30), model_id="m1", config_hash="cfg1"), tmp_path / "j")
    (folder / "v0001" / INDEX_FILE).write_bytes((other / "v0001" / INDEX_FILE).read_bytes())
    with pytest.raises(IndexLoadError, match="does not match its checksum"):
        load_index(folder)
    (folder / "v0001" / INDEX_FILE).unlink()
    with pytest.raises(IndexLoadError, match=f"{INDEX_FILE} is missing"):
        load_index(folder)
    (other / MANIFEST_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(IndexLoadError, match="not a readable pfd-index-v2 manifest"):
        load_index(other)


def test_build_checks_alignment():
    with pytest.raises(ValueError, match="3 gallery records but 4 feature rows"):
        build_index(np.zeros((4, 8), np.float32), records(3))
