"""One gallery suite, two stores: the FAISS index folder and a Milvus collection (Milvus Lite, in this process, a
folder under tmp_path). Build, search with the stored fields, add and dedupe, remove, reload, camera and time
filters that still return k, the refusals (another model, an existing gallery, Lite's missing kinds, features
over Milvus's 32,768 values, bad locations), a kill during a Milvus add then a rerun, and the two stores' flat
searches agreeing on real features (a tiny model on CUHK03 crops)."""
import hashlib
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_gallery_growth import FakeModel, image_folder, kill_child_at

from pfd.api import Gallery, check_gallery_output, parse_name
from pfd.errors import InvalidInputError, OutputExistsError, UserError
from pfd.retrieval import build_index, evaluate, rank_gallery
from pfd.retrieval.gallery_index import new_gallery_index
from pfd.retrieval.index_folder import IndexLoadError
from pfd.retrieval.milvus_store import MilvusGallery
from pfd.retrieval.part_distance import PartLayout, visible_part_distance
from pfd.retrieval.stores import SearchFilter, decode_keypoints, encode_keypoints

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))  # tests/retrieval/ is two folders down
STORES = ["faiss", "milvus-lite"]
pytestmark = pytest.mark.usefixtures("single_faiss_thread")


def location(store: str, tmp_path, name: str = "gallery") -> str:
    return str(tmp_path / name) if store == "faiss" else f"milvus:{tmp_path / name}.db"


@pytest.fixture
def release_lite():
    """Close what a test opened in Milvus Lite, so the next test (or a child process) can open its folder."""
    opened = []
    yield opened.append
    for gallery in opened:
        gallery.close()


def pose_of(paths) -> dict:
    """Distinct keypoints [17, 3] per image (what a gallery must give back with each match)."""
    return {str(p): np.random.default_rng(i).uniform(0, 8, (17, 3)).astype(np.float32) for i, p in enumerate(paths)}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("store", STORES)
def test_build_search_add_remove_reload(store, tmp_path, release_lite):
    images = image_folder(tmp_path / "g", 24)
    paths = sorted(images.iterdir())
    model, where = FakeModel(), location(store, tmp_path)
    poses, times = pose_of(paths), {str(p): 1000.0 + i for i, p in enumerate(paths)}
    gallery = Gallery.build(model, images, keypoints=poses, times=times, store=where)
    release_lite(gallery)
    assert len(gallery) == 24
    target = paths[5]
    first = gallery.search(target, k=3)[0]  # the image itself, with every stored field
    assert (first.path, (first.id, first.camera), first.time) == (str(target), parse_name(target), 1005.0)
    assert first.distance < 1e-4
    assert first.sha256 == sha256(target) and first.index >= 0
    np.testing.assert_array_equal(first.keypoints, decode_keypoints(encode_keypoints(poses[str(target)])))
    assert np.abs(first.keypoints - poses[str(target)]).max() < 0.01  # float16 of values below 8

    image_folder(images, 8, start=24)
    model.embedded = []
    assert gallery.add(images) == {"added": 8, "duplicates": 24, "replaced": 0}
    assert len(model.embedded) == 8  # only the new images
    changed = paths[0]
    Image.new("RGB", (8, 16), (0, 99, 0)).save(changed)
    assert gallery.add([changed]) == {"added": 0, "duplicates": 0, "replaced": 1}
    assert gallery.search(changed, k=1)[0].sha256 == sha256(changed)
    assert gallery.remove([paths[9], tmp_path / "not-there.png"]) == 1
    assert len(gallery) == 31 and all(m.path != str(paths[9]) for m in gallery.search(paths[9], k=31))
    gallery.save(where)
    gallery.close()

    loaded = Gallery.load(where, model)
    release_lite(loaded)
    assert len(loaded) == 31
    assert [m.path for m in loaded.search(paths[12], k=5)] == [m.path for m in gallery.search(paths[12], k=5)]
    assert loaded.search(paths[12], k=1)[0].time == 1012.0
    assert loaded.index.path_of(first.index) == str(target) and loaded.index.path_of(10 ** 6) is None


@pytest.mark.parametrize("store", STORES)
def test_stored_vectors_come_back_whole_for_re_ranking(store, tmp_path, release_lite):
    """`vectors(rows)` gives each live row's vector as it was indexed (L2-normalized), in the order asked and
    after a removal; a removed row is refused."""
    images = image_folder(tmp_path / "g", 12)
    paths = sorted(map(str, images.iterdir()))
    model = FakeModel()
    gallery = Gallery.build(model, images, store=location(store, tmp_path))
    release_lite(gallery)
    removed = gallery.index.find(model.embed(paths[3]), 1)[0]
    assert gallery.remove([paths[3]]) == 1
    hits = gallery.index.find(model.embed(paths[7]), 11)[::-1]  # farthest first: the order asked is kept
    want = model.embed([h.path for h in hits])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(gallery.index.vectors([h.row for h in hits]), want, atol=1e-6)
    assert gallery.index.vectors([]).shape == (0, 16)
    with pytest.raises(ValueError, match="not"):
        gallery.index.vectors([removed.row])


def test_a_compressing_kind_refuses_to_give_its_vectors(tmp_path):
    gallery = Gallery.build(FakeModel(), image_folder(tmp_path / "g", 40), index="ivfpq")
    with pytest.raises(ValueError, match="compressed.*flat, flat-fp16"):
        gallery.index.vectors([0])


class PartModel(FakeModel):
    """A FakeModel whose feature holds 3 part blocks of 4 values after 4 others (PartLayout(4, 3, 4)), the
    config asking for the visible-part distance; each image hides the part blocks its name's number picks."""

    layout = PartLayout(4, 3, 4)

    def __init__(self, rerank_top: int):
        super().__init__(dim=20)
        self.cfg.TEST = SimpleNamespace(PART_RERANK_TOP=rerank_top)
        self.part_layout = self.layout

    def embed(self, paths, keypoints=None, camids=None, progress=False, return_keypoints=False):
        feats = super().embed(paths, keypoints, camids, progress, return_keypoints=False)
        paths = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
        for row, p in zip(feats, paths):
            number = int(os.path.basename(p).split("_")[2])
            for part in range(3):
                if (number >> part) & 1:
                    row[4 + 4 * part:8 + 4 * part] = 0
        return (feats, keypoints) if return_keypoints else feats


@pytest.mark.parametrize("store", STORES)
def test_visible_part_distance_re_ranks_a_store_search(store, tmp_path, release_lite):
    """With TEST.PART_DISTANCE visible a search re-ranks the TEST.PART_RERANK_TOP nearest by the whole feature
    with the visible-part distance: with all of them, exactly the ranking and distances evaluation computes
    over the whole gallery; with fewer, the same distances over the whole feature's nearest only."""
    images = image_folder(tmp_path / "g", 24)
    paths = sorted(map(str, images.iterdir()))
    gallery = Gallery.build(PartModel(rerank_top=24), images, store=location(store, tmp_path))
    release_lite(gallery)
    query = paths[13]
    feats = torch.from_numpy(gallery.model.embed(paths))
    exact = visible_part_distance(feats[13:14], F.normalize(feats, dim=1), PartLayout(4, 3, 4))[0]
    matches = gallery.search(query, k=24)
    np.testing.assert_allclose([m.distance for m in matches], exact.sort().values.numpy(), atol=1e-5)
    assert [m.path for m in matches][:5] == [paths[i] for i in exact.argsort(stable=True)[:5]]

    gallery.model.cfg.TEST.PART_RERANK_TOP = 6
    nearest = {h.path for h in gallery.index.find(gallery.model.embed(query), 6)}  # by the whole feature
    few = gallery.search(query, k=4)
    assert len(few) == 4 and {m.path for m in few} <= nearest
    np.testing.assert_allclose([m.distance for m in few], sorted(exact[[paths.index(p) for p in nearest]].tolist())[:4],
                               atol=1e-6)


def test_a_feature_search_loads_no_model_unless_the_visible_part_distance_needs_one(tmp_path):
    """Searching a saved gallery by features needs no checkpoint, as before the re-ranking existed; with the
    visible-part distance in its stored config it needs the model's part layout, so it loads the model."""
    images = image_folder(tmp_path / "g", 8)
    model = FakeModel()
    model.cfg.dump = lambda: "MODEL:\n  NAME: pfd\n"
    Gallery.build(model, images).save(tmp_path / "plain")
    target = sorted(map(str, images.iterdir()))[2]
    query = model.embed(target)
    assert Gallery.load(tmp_path / "plain").search(query, k=3)[0].path == target
    model.cfg.dump = lambda: "MODEL:\n  NAME: pfd\nTEST:\n  PART_DISTANCE: visible\n"
    Gallery.build(model, images).save(tmp_path / "parts")
    with pytest.raises(UserError, match="fake.pth"):  # the stored checkpoint, which does not exist
        Gallery.load(tmp_path / "parts").search(query, k=3)


def test_visible_part_distance_refuses_a_kind_that_compresses_before_embedding(tmp_path):
    model = PartModel(rerank_top=10)
    with pytest.raises(InvalidInputError, match="'ivfpq'.*flat or flat-fp16"):
        Gallery.build(model, image_folder(tmp_path / "g", 40), index="ivfpq")
    assert model.embedded == []


def exact_filtered(feats, camids, times, query, k, where):
    """The rows an exact search restricted to `where` returns, nearest first."""
    rows = np.flatnonzero(where.allowed(np.asarray(camids), np.asarray(times, np.float64)))
    _, order = rank_gallery(query[None], feats[rows], topk=min(k, len(rows)), backend="faiss")
    return rows[order[0]].tolist()


@pytest.mark.parametrize("store", STORES)
def test_filters_return_k_whenever_k_pass(store, tmp_path, release_lite):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 16)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    recs = [SimpleNamespace(path=f"/g/{i}.jpg", pid=i // 4, camid=i % 6) for i in range(300)]
    times = [None if i % 7 == 0 else float(i) for i in range(300)]
    if store == "faiss":
        index, builder = new_gallery_index("flat", 16, 300, True)
    else:
        index, builder = MilvusGallery.create(location(store, tmp_path), "flat", 16, 300, True)
        release_lite(index)
    index.add(feats, recs, [None] * 300, builder, times=times)
    query = feats[3] + 0.05 * rng.normal(size=16).astype(np.float32)
    for where in [SearchFilter.of(cameras=[1, 4]), SearchFilter.of(exclude_camera=3),
                  SearchFilter.of(since=100, until=130), SearchFilter.of(cameras=[5], since=250)]:
        hits = index.find(query[None], 10, where)
        expected = exact_filtered(feats, [r.camid for r in recs], np.array(times, np.float64), query, 10, where)
        assert [h.row for h in hits] == expected, where
        assert len(hits) == min(10, int(where.allowed(np.arange(300) % 6, np.array(times, np.float64)).sum()))
    sparse = SearchFilter.of(cameras=[0], until=40)  # rows 6, 12, 18, 24, 30, 36 (0 and 42 have no time)
    assert sorted(h.row for h in index.find(query[None], 10, sparse)) == [6, 12, 18, 24, 30, 36]


def test_faiss_ivf_filter_probes_every_list_when_its_lists_run_out():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2000, 16)).astype(np.float32)
    recs = [SimpleNamespace(path=f"/g/{i}.jpg", pid=i, camid=int(i == 1999)) for i in range(2000)]
    index = build_index(feats, recs, index_type="ivfpq", ivfpq_params={"nprobe": 1})
    hits = index.find(feats[:1], 5, SearchFilter.of(cameras=[1]))  # one image of camera 1, far off in its list
    assert [h.row for h in hits] == [1999]


def test_filter_arguments_are_checked():
    with pytest.raises(InvalidInputError, match="since .* is after until"):
        SearchFilter.of(since="2024-05-02", until="2024-05-01")
    with pytest.raises(InvalidInputError, match="ISO 8601"):
        SearchFilter.of(since="yesterday")
    with pytest.raises(InvalidInputError, match="empty list keeps no image"):
        SearchFilter.of(cameras=[])
    assert SearchFilter.of() is None
    assert SearchFilter.of(since="1970-01-01T00:01:00").since == 60.0  # no zone = UTC
    assert SearchFilter.of(cameras=[2, 0], exclude_camera=1, until=5).expression() == \
        "camid in [0, 2] and camid != 1 and time <= 5.0"


@pytest.mark.parametrize("store", STORES)
def test_refusals(store, tmp_path, release_lite):
    images = image_folder(tmp_path / "g", 12)
    where = location(store, tmp_path)
    gallery = Gallery.build(FakeModel(), images, store=where)
    release_lite(gallery)
    with pytest.raises(OutputExistsError, match="already holds a gallery.*--replace.*--append"):
        Gallery.build(FakeModel(), images, store=where)
    with pytest.raises(OutputExistsError, match="already holds a gallery"):
        check_gallery_output(where)
    other = FakeModel()
    other.model_id = "another-model"
    with pytest.raises(IndexLoadError, match="model_id='fake-model' but the caller has model_id='another-model'"):
        Gallery.load(where, other)
    assert len(Gallery.build(FakeModel(), list(images.iterdir())[:5], store=where, replace=True)) == 5
    with pytest.raises(InvalidInputError, match="moves to another store .* by building it there"):
        gallery.save(location("milvus-lite" if store == "faiss" else "faiss", tmp_path, "elsewhere"))


def test_milvus_refusals_name_the_way_out(tmp_path, release_lite):
    images = image_folder(tmp_path / "g", 8)
    lite = location("milvus-lite", tmp_path)
    with pytest.raises(InvalidInputError, match=r"Milvus Lite has no IVF_PQ index .*Lite offers FLAT, IVF_FLAT.*"
                                                r"--index-type flat"):
        Gallery.build(FakeModel(), images, index="opq+ivfpq", store=lite)
    with pytest.raises(InvalidInputError, match=r"40000 values exceed Milvus's 32,768 .*pca\+ivfpq or opq\+ivfpq"):
        Gallery.build(FakeModel(dim=40000), images, store=lite)
    with pytest.raises(InvalidInputError, match="no Milvus counterpart; on Milvus use one of flat, ivfpq"):
        Gallery.build(FakeModel(), images, index="flat-fp16", store=lite)
    for bad in ["milvus:gallery", "milvus://host/coll", "milvus://host:19530/1abc"]:
        with pytest.raises(InvalidInputError, match="expected milvus:PATH.db .* or milvus://HOST:PORT/COLLECTION"):
            Gallery.load(bad)
    with pytest.raises(IndexLoadError, match="no Milvus Lite gallery at"):
        Gallery.load(location("milvus-lite", tmp_path, "absent"))
    user = tmp_path / "mine.db"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty and was not made by pfd"):
        Gallery.build(FakeModel(), images, store=f"milvus:{user}")
    assert os.listdir(user) == ["notes.txt"]
    # A gallery rebuilt by another model after it was opened: refused before the next search and insert.
    gallery = Gallery.build(FakeModel(), images, store=lite)
    release_lite(gallery)
    gallery.index.client.alter_collection_properties("gallery", properties={"pfd.model_id": "another-model"})
    with pytest.raises(IndexLoadError, match="now holds model_id='another-model'.*another model's gallery replaced"):
        gallery.search(sorted(images.iterdir())[0], k=2)


def test_a_reducing_kind_keeps_its_stage_with_the_collection(tmp_path, release_lite, monkeypatch):
    """pca+ivfpq on Milvus: the PCA stage is trained on our side, stored beside the collection, applied before
    inserts and searches, and read back on load; a damaged stage is refused. Lite has no IVF_PQ, so the
    server's index is stood in for by Lite's FLAT (its IVF kinds ignore pymilvus 2.5's nlist): what is
    tested is our side."""
    import faiss

    import pfd.retrieval.milvus_store as milvus_store
    monkeypatch.setitem(milvus_store.MILVUS_INDEX, "pca+ivfpq", "FLAT")
    images = image_folder(tmp_path / "g", 40)
    where = location("milvus-lite", tmp_path)
    gallery = Gallery.build(FakeModel(dim=64), images, index="pca+ivfpq", store=where)
    release_lite(gallery)
    assert gallery.meta["vector_dim"] == 32 == gallery.meta["params"]["d_out"]  # 64 values reduced to 32
    assert gallery.meta["transform"]["parts"] == 1
    paths = sorted(images.iterdir())
    target = paths[17]
    found = [m.path for m in gallery.search(target, k=5)]
    # The ranking by cosine after the stage (the PCA, then the L2norm as the FAISS store's pca+ivfpq),
    # computed here from its PCA matrix; renormalized, each image is its own nearest.
    assert gallery.index.stage.chain.size() == 2
    pca = faiss.downcast_VectorTransform(gallery.index.stage.chain.at(0))
    matrix = faiss.vector_to_array(pca.A).reshape(32, 64)  # [d_out, d_in]
    feats = FakeModel(dim=64).embed(paths)
    reduced = (feats / np.linalg.norm(feats, axis=1, keepdims=True)) @ matrix.T + faiss.vector_to_array(pca.b)
    reduced /= np.linalg.norm(reduced, axis=1, keepdims=True)
    assert found == [str(paths[i]) for i in np.argsort(-(reduced @ reduced[17]))[:5]] and found[0] == str(target)
    gallery.close()
    loaded = Gallery.load(where, FakeModel(dim=64))
    release_lite(loaded)
    assert [m.path for m in loaded.search(target, k=5)] == found
    loaded.index.client.delete("gallery_pfd_transform", filter="part >= 0")
    with pytest.raises(IndexLoadError, match="pca\\+ivfpq stage .* is missing or damaged.*--replace"):
        Gallery.load(where)


CHILD = r"""
import sys, time
import pfd.retrieval.milvus_store as store
from pfd.api import Gallery
from test_gallery_growth import FakeModel

where, images, marker = sys.argv[1:4]
calls = []


class Client:  # pymilvus's client, stopping for good after its second insert
    def __init__(self, real):
        self.real = real
    def __getattr__(self, name):
        return getattr(self.real, name)
    def insert(self, *args, **kwargs):
        result = self.real.insert(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            open(marker, "w").close()
            time.sleep(600)  # killed here by the test
        return result


real_client = store._client
store._client = lambda *a, **k: Client(real_client(*a, **k))
Gallery.load(where, FakeModel()).add(images, chunk_size=4)
"""


@pytest.mark.slow
def test_a_kill_during_a_milvus_add_then_the_same_add_completes_it(tmp_path):
    images = image_folder(tmp_path / "g", 16)
    where = location("milvus-lite", tmp_path)
    Gallery.build(FakeModel(), images, store=where).close()
    image_folder(images, 16, start=16)
    marker = tmp_path / "marker"  # made once the child's second chunk is in
    here = os.path.dirname(os.path.abspath(__file__))  # the child imports test_gallery_growth from here
    kill_child_at(marker, [CHILD, where, str(images), str(marker)], PYTHONPATH=os.pathsep.join([REPO, here]))
    gallery = Gallery.load(where, FakeModel())
    try:
        assert len(gallery) == 24  # what the killed add left: its first two chunks of 4
        assert gallery.add(images, chunk_size=4) == {"added": 8, "duplicates": 24, "replaced": 0}
        assert len(gallery) == 32
        rows = gallery.index.client.query("gallery", filter="id >= 0", output_fields=["id", "path"], limit=100)
        assert len({r["path"] for r in rows}) == len({r["id"] for r in rows}) == 32  # no duplicate, no id reused
    finally:
        gallery.close()


# ----------------------------------------------------------------------------- real features: flat equivalence
@pytest.fixture(scope="module")
def real_features(cuhk03_root, tmp_path_factory):
    """Features of 16 CUHK03 queries and 96 gallery crops from a tiny untrained PFD (keypoints all unseen)."""
    from pfd.api import ReIDModel
    from pfd.data.datasets import build_dataset
    from pfd.engine.trainer import Trainer

    from engine_tiny import make_data, tiny_config
    root = make_data(tmp_path_factory.mktemp("stores"))
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false", "TEST.IMS_PER_BATCH", "32")).save(0, improved=False)
    model = ReIDModel.from_checkpoint(root / "run" / "last.pth", device="cpu")
    data = build_dataset(f"folder:{cuhk03_root}", "unused")
    query, gallery = data.query[:16], data.gallery[:96]
    unseen = np.zeros((1, 17, 3), np.float32)
    qf = model.embed([r.path for r in query], np.repeat(unseen, len(query), 0), camids=[r.camid for r in query])
    gf = model.embed([r.path for r in gallery], np.repeat(unseen, len(gallery), 0), camids=[r.camid for r in gallery])
    return qf, gf, query, gallery


def test_flat_searches_agree_on_real_features(real_features, tmp_path, release_lite):
    qf, gf, query, gallery = real_features
    faiss_index = build_index(gf, gallery)
    lite, _ = MilvusGallery.create(location("milvus-lite", tmp_path), "flat", gf.shape[1], len(gf), True)
    release_lite(lite)
    lite.add(gf, gallery, [None] * len(gallery))
    d_faiss, r_faiss = faiss_index.search(qf, 10)
    d_lite, r_lite = lite.search(qf, 10)
    np.testing.assert_array_equal(r_lite, r_faiss)
    np.testing.assert_allclose(d_lite, d_faiss, atol=1e-5)

    def metrics(index):  # the whole gallery ranked by the store, Market-1501 protocol
        dist, rows = index.search(qf, len(gallery))
        distmat = np.empty_like(dist)
        np.put_along_axis(distmat, rows, dist, axis=1)
        return evaluate(distmat, [r.pid for r in query], [r.pid for r in gallery], [r.camid for r in query],
                        [r.camid for r in gallery])
    by_faiss, by_lite = metrics(faiss_index), metrics(lite)
    assert by_faiss["mAP"] == pytest.approx(by_lite["mAP"], abs=1e-9)
    assert by_faiss["cmc"][0] == by_lite["cmc"][0]


# ----------------------------------------------------------------------------- query.py and pfd.serve on Milvus
@pytest.mark.slow
def test_query_py_and_the_service_answer_from_milvus_as_from_the_folder(tmp_path, capsys):
    """`query.py index --out milvus:...` (with --times), then `query.py search` and `python -m pfd.serve` on it
    answer as on the FAISS folder of the same images; the filters reach Milvus from both."""
    import httpx
    from milvus_lite.server_manager import server_manager_instance
    from serve_tiny import browser_page, build_tiny_index, running_server

    from engine_tiny import DEMO_CONFIG, load_script, tiny_opts
    query_script = load_script("query")
    tiny = build_tiny_index(tmp_path)  # the FAISS folder: tiny["index"]
    root, lite = tiny["root"], f"milvus:{tmp_path / 'gallery.db'}"
    gallery_dir = root / "synthetic" / "bounding_box_test"
    names = sorted(p.name for p in gallery_dir.glob("*.jpg"))
    (tmp_path / "times.csv").write_text("path,timestamp\n" + "".join(
        f"{name},{1_700_000_000 + 60 * i}\n" for i, name in enumerate(names) if i % 2 == 0))
    query_script.main(["index", "--config", str(DEMO_CONFIG), "--weights", str(root / "run" / "last.pth"),
                       "--gallery", str(gallery_dir), "--out", lite, "--times", str(tmp_path / "times.csv"),
                       *tiny_opts(root, root / "run")])

    def ranking(index, *flags) -> list[list[str]]:
        capsys.readouterr()
        query_script.main(["search", "--index", str(index), "--image", str(image), "--topk", "6",
                           "--out", str(tmp_path / "search.png"), *flags])
        return [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]

    image = sorted((root / "synthetic" / "query").glob("*.jpg"))[3]
    by_folder, by_milvus = ranking(tiny["index"]), ranking(lite)
    assert [r[4] for r in by_milvus] == [r[4] for r in by_folder] and len(by_milvus) == 6
    np.testing.assert_allclose([float(r[1]) for r in by_milvus], [float(r[1]) for r in by_folder], atol=2e-4)
    by_cameras = ranking(lite, "--cameras", "1,2")
    assert len(by_cameras) == 6 and all(r[3] in ("1", "2") for r in by_cameras)
    assert [r[4] for r in by_cameras] == [r[4] for r in ranking(tiny["index"], "--cameras", "1,2")]
    since = "2023-11-14T22:13:20+00:00"  # 1,700,000,000 s: every image with a time
    in_time = ranking(lite, "--since", since, "--exclude-camera")
    assert len(in_time) == 6 and all(names.index(os.path.basename(r[4])) % 2 == 0 for r in in_time)
    assert all(int(r[3]) != parse_name(image)[1] + 1 for r in in_time)  # not the query's own camera
    server_manager_instance.release_server(str(tmp_path / "gallery.db"))  # the service's process opens it next

    gallery = tiny["gallery"]
    with running_server(lite, tmp_path / "server.log") as url:
        health = httpx.get(url + "/api/health").json()
        assert (health["store"], health["gallery_size"]) == ("milvus", len(gallery))
        for fields, filters in [({}, {}), ({"cameras": "0,2", "exclude_camera": "2"}, {"cameras": [0]})]:
            answer = httpx.post(url + "/api/search", data={"gallery": "7", "k": "5", **fields}, timeout=60).json()
            expected = gallery.search(gallery.meta["paths"][7], 5, **filters)
            assert [(m["index"], m["id"], m["camera"]) for m in answer["matches"]] == \
                [(gallery.meta["paths"].index(m.path), m.id, m.camera) for m in expected]
        assert httpx.get(url + "/api/gallery/7").content == open(gallery.meta["paths"][7], "rb").read()
        bad = httpx.post(url + "/api/search", data={"gallery": "7", "since": "later"}, timeout=60)
        assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]
        with browser_page() as page:  # the page's filter fields reach the search
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#samples button').length > 0")
            page.click("#filters summary")
            page.fill("#cameras", "1")
            page.click("#samples button")
            page.wait_for_function("document.body.dataset.state === 'done'", timeout=60_000)
            cameras = page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.camera)")
            assert cameras and set(cameras) == {"1"}
