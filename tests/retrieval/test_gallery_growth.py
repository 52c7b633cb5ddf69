"""Gallery indexes that grow and shrink: each kind, adds and removals, the folder guard, kills during a
save, and a streaming build whose memory does not grow with the gallery."""
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pfd.api import Gallery
from pfd.errors import OutputExistsError
from pfd.retrieval import INDEX_KINDS, build_index, load_index, rank_gallery, save_index
from pfd.retrieval.index_folder import INDEX_FILE, MANIFEST_FILE, META_FILE, IndexLoadError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))  # tests/retrieval/ is two folders down


pytestmark = pytest.mark.usefixtures("single_faiss_thread")


def clustered(rng, n, dim=32, ids=100):
    """Re-ID-like features: ~n/ids images around each identity centre."""
    centres = rng.normal(size=(ids, dim)).astype(np.float32)
    return (centres[rng.integers(0, ids, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def records(n, start=0):
    return [SimpleNamespace(path=f"/data/g/{i:05d}.jpg", pid=i // 4, camid=i % 3) for i in range(start, start + n)]


def checksums(n, start=0):
    return [f"sha-{i}" for i in range(start, start + n)]


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_each_kind_finds_near_duplicates_and_grows(kind, tmp_path):
    rng = np.random.default_rng(0)
    gallery = clustered(rng, 1200, ids=1200)  # ~1 image per identity: the query's own image stands out
    index = build_index(gallery[:1000], records(1000), index_type=kind, sha256s=checksums(1000), chunk_size=300)
    assert index.meta["index_type"] == kind and index.meta["factory"]
    if kind == "flat":
        assert index.meta["recall_at_10"] is None
    else:
        assert 0.3 < index.meta["recall_at_10"] <= 1.0  # far above chance (0.01), unclustered data
    index.add(gallery[1000:], records(200, 1000), checksums(200, 1000))  # adds without retraining
    loaded = load_index(save_index(index, tmp_path / kind))
    assert len(loaded) == 1200 and loaded.meta["paths"][1100] == "/data/g/01100.jpg"
    probes = [5, 500, 1050, 1199]
    queries = gallery[probes] + 0.01 * rng.normal(size=(4, 32)).astype(np.float32)
    _, rows = loaded.search(queries, topk=10)
    if kind.startswith("flat"):
        assert rows[:, 0].tolist() == probes
    else:  # compressed (4-bit codes at this size): the image itself among the first 10, old or added
        assert all(p in r for p, r in zip(probes, rows))


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_removed_images_are_never_returned(kind, tmp_path):
    rng = np.random.default_rng(1)
    gallery = clustered(rng, 1000)
    index = build_index(gallery, records(1000), index_type=kind, sha256s=checksums(1000))
    gone = [r.path for r in records(1000)[:500:2]]
    assert index.remove(gone + ["/not/there.jpg"]) == 250
    assert index.index.ntotal == 750 and index.meta["tombstones"] == []  # removed from FAISS itself
    _, rows = index.search(gallery, topk=20)
    assert not np.isin(rows, np.arange(0, 500, 2)).any()
    loaded = load_index(save_index(index, tmp_path / "i"))
    assert len(loaded) == 750 and loaded.meta["paths"][0] is None and loaded.meta["paths"][1] == "/data/g/00001.jpg"
    _, rows = loaded.search(gallery[:10], topk=5)
    assert not np.isin(rows, np.arange(0, 500, 2)).any()


def test_an_index_that_cannot_remove_keeps_tombstones(tmp_path):
    rng = np.random.default_rng(2)
    gallery = clustered(rng, 300)
    index = build_index(gallery, records(300), index_type="factory:HNSW16", sha256s=checksums(300))
    assert index.remove([records(300)[i].path for i in (3, 7)]) == 2
    assert index.index.ntotal == 300 and index.meta["tombstones"] == [3, 7]  # HNSW cannot remove vectors
    loaded = load_index(save_index(index, tmp_path / "i"))
    dist, rows = loaded.search(gallery[[3, 7, 9]], topk=5)
    assert rows.shape == (3, 5) and not np.isin(rows, [3, 7]).any() and rows[2, 0] == 9
    assert np.isfinite(dist).all()


def test_plan_add_skips_duplicates_and_replaces_changed_files():
    index = build_index(clustered(np.random.default_rng(3), 10), records(10), sha256s=checksums(10))
    paths = [r.path for r in records(12)]
    sums = checksums(12)
    sums[4] = "changed"
    new, duplicates, changed = index.plan_add(paths + paths[:1], sums + sums[:1])
    assert new == [4, 10, 11] and duplicates == 10 and changed == [paths[4]]


def test_output_folder_guard(tmp_path):
    rng = np.random.default_rng(4)
    index = build_index(clustered(rng, 30), records(30), sha256s=checksums(30))
    user = tmp_path / "user"
    user.mkdir()
    (user / "meta.json").write_text('{"my": "notes"}')
    with pytest.raises(OutputExistsError, match="not empty and was not made by pfd"):
        save_index(index, user)
    assert (user / "meta.json").read_text() == '{"my": "notes"}' and sorted(os.listdir(user)) == ["meta.json"]

    folder = save_index(index, tmp_path / "idx")
    other = build_index(clustered(rng, 40), records(40), sha256s=checksums(40))
    with pytest.raises(OutputExistsError, match="already holds a gallery index.*--replace.*--append"):
        save_index(other, folder)
    assert len(load_index(folder)) == 30
    save_index(other, folder, replace=True)
    assert len(load_index(folder)) == 40 and sorted(os.listdir(folder)) == [".pfd-output.json", MANIFEST_FILE,
                                                                              "v0002"]
    # Saving back to the folder it came from is an update, unless someone else saved there meanwhile.
    first, second = load_index(folder), load_index(folder)
    first.add(clustered(rng, 2), records(2, 40), checksums(2, 40))
    save_index(first, folder)
    second.remove(["/data/g/00000.jpg"])
    with pytest.raises(OutputExistsError, match="saved by another process.*v0002 -> v0003"):
        save_index(second, folder)
    assert len(load_index(folder)) == 42


def test_edited_or_shortened_metadata_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    folder = save_index(build_index(clustered(rng, 30), records(30), sha256s=checksums(30)), tmp_path / "i")
    meta_path = folder / "v0001" / META_FILE
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["paths"][0], meta["paths"][1] = meta["paths"][1], meta["paths"][0]  # two paths swapped
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IndexLoadError, match=r"meta\.json does not match its checksum in .*manifest\.json"):
        load_index(folder)
    # A consistent-looking pair whose tables disagree (checksums recomputed): the message names the tables.
    meta = json.loads(original)
    meta["pids"] = meta["pids"][:-1]
    meta_path.write_text(json.dumps(meta))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    from pfd.io import sha256_file
    manifest["files"][META_FILE] = sha256_file(meta_path)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="table 'pids' has 29 entries but 'paths' has 30"):
        load_index(folder)


def test_first_layout_folders_are_refused_and_replaceable(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / INDEX_FILE).write_bytes(b"faiss bytes")
    from pfd.io import sha256_file
    (folder / META_FILE).write_text(json.dumps({"format": "pfd-index-v1", "index_sha256": sha256_file(
        folder / INDEX_FILE)}))
    with pytest.raises(IndexLoadError, match=r"first layout.*--replace"):
        load_index(folder)
    index = build_index(clustered(np.random.default_rng(6), 20), records(20), sha256s=checksums(20))
    with pytest.raises(OutputExistsError, match="already holds a gallery index"):
        save_index(index, folder)
    save_index(index, folder, replace=True)
    assert sorted(os.listdir(folder)) == [".pfd-output.json", MANIFEST_FILE, "v0001"]  # the old pair removed
    assert len(load_index(folder)) == 20


CHILD = r"""
import os, sys, time
import numpy as np
from types import SimpleNamespace
import faiss
import pfd.retrieval.index_folder as folder_mod
from pfd.retrieval import build_index, load_index, save_index

mode, stage, out, marker = sys.argv[1:5]
faiss.omp_set_num_threads(1)


def pause():
    open(marker, "w").close()
    time.sleep(600)  # killed here by the test


def before_call(name, number):
    real, calls = getattr(folder_mod, name), []
    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            pause()
        return real(*args, **kwargs)
    setattr(folder_mod, name, wrapped)


class HalfWrite:  # faiss whose write_index stops half way through the temp file
    def __getattr__(self, name):
        return getattr(faiss, name)
    def PyCallbackIOWriter(self, write):  # noqa: N802 (faiss's name)
        return write
    def write_index(self, index, write):
        data = faiss.serialize_index(index).tobytes()
        write(data[: len(data) // 2])
        write.__self__.flush()
        pause()


{"faiss": lambda: setattr(folder_mod, "_faiss", HalfWrite),
 "meta": lambda: before_call("atomic_write", 1), "manifest": lambda: before_call("atomic_write", 2),
 "cleanup": lambda: before_call("_remove_old_versions", 1)}[stage]()
rng = np.random.default_rng(1)
records = [SimpleNamespace(path=f"/g/{i}.jpg", pid=i, camid=0) for i in range(100)]
if mode == "add":
    gallery = load_index(out)
    gallery.add(rng.normal(size=(10, 16)).astype(np.float32), records[:10], [f"new-{i}" for i in range(10)])
    save_index(gallery, out)
else:
    save_index(build_index(rng.normal(size=(50, 16)).astype(np.float32), records[:50], index_type="ivfpq",
                           sha256s=[f"r-{i}" for i in range(50)]), out, replace=True)
"""


def kill_at_marker(tmp_path, mode, stage, out):
    marker = tmp_path / f"marker-{mode}-{stage}"
    kill_child_at(marker, [CHILD, mode, stage, str(out), str(marker)], PYTHONPATH=REPO)


def kill_child_at(marker, args: list[str], **env: str) -> None:
    """Run `python -c *args` (with `env` added) and SIGKILL it once it has made `marker`."""
    proc = subprocess.Popen([sys.executable, "-c", *args], cwd=REPO, env=dict(os.environ, **env),
                            stderr=subprocess.PIPE)
    while not marker.exists():  # wait for the child to reach the marked moment (never a fixed sleep)
        if proc.poll() is not None:
            pytest.fail(f"child exited before the marker: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.mark.parametrize("mode,stage,after", [("add", "faiss", 30), ("add", "meta", 30), ("add", "manifest", 30),
                                              ("add", "cleanup", 40), ("replace", "faiss", 30), ("replace", "meta", 30),
                                              ("replace", "manifest", 30), ("replace", "cleanup", 50)])
@pytest.mark.slow
def test_a_kill_during_a_save_leaves_one_whole_index(tmp_path, mode, stage, after):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 16)).astype(np.float32)
    folder = save_index(build_index(feats, [SimpleNamespace(path=f"/old/{i}.jpg", pid=i, camid=0) for i in range(30)],
                                    sha256s=[f"o-{i}" for i in range(30)]), tmp_path / "idx")
    kill_at_marker(tmp_path, mode, stage, folder)
    loaded = load_index(folder)  # whole: checksums, tables and index agree
    assert len(loaded) == after
    if after == 30:  # the old gallery, as it was
        assert loaded.meta["paths"][:2] == ["/old/0.jpg", "/old/1.jpg"]
        assert loaded.search(feats[[7]], topk=1)[1][0, 0] == 7
    # The next save proceeds and removes what the killed one left behind.
    save_index(loaded, folder)
    assert len(load_index(folder)) == after
    versions = [p.name for p in folder.iterdir() if p.is_dir()]
    assert len(versions) == 1 and not [p for p in (folder / versions[0]).iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- Gallery.build / add with a fake model
class FakeModel:
    """What Gallery needs of a ReIDModel; features from the image's pixel value (+ per-path noise), recording
    which images it embedded and the largest batch it made."""

    def __init__(self, dim=16):
        self.feature_dim, self.normalize, self.model_id, self.config_hash = dim, True, "fake-model", "fake-cfg"
        # POSE_ONLINE: it reads no keypoints, so the query keypoint policy (Gallery.search) hands it none
        self.cfg = SimpleNamespace(MODEL=SimpleNamespace(FEAT_KIND="full", NAME="fake", POSE_ONLINE=True,
                                                         POSE_BACKEND="mediapipe"), dump=lambda: "fake: yes")
        self.checkpoint, self.embedded, self.largest = "/fake.pth", [], 0

    def embed(self, paths, keypoints=None, camids=None, progress=False, return_keypoints=False):
        paths = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
        self.embedded += paths
        self.largest = max(self.largest, len(paths))
        seeds = [int(os.path.basename(p).split("_")[0]) for p in paths]  # the identity in the name
        feats = np.stack([np.random.default_rng([s, zlib.crc32(p.encode())]).normal(size=self.feature_dim) * 0.1
                          + np.random.default_rng(s).normal(size=self.feature_dim)
                          for s, p in zip(seeds, paths)]).astype(np.float32)
        return (feats, keypoints) if return_keypoints else feats


def image_folder(root, n, start=0):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.new("RGB", (8, 16), (i % 256, 0, 0)).save(root / f"{i // 4:04d}_c{i % 3 + 1}s1_{i:06d}_00.png")
    return root


def test_gallery_add_embeds_only_new_images_and_remove_forgets(tmp_path):
    images = image_folder(tmp_path / "g", 40)
    model = FakeModel()
    Gallery.build(model, images, index="ivfpq", chunk_size=16).save(tmp_path / "idx")
    assert sorted(model.embedded) == sorted(map(str, images.iterdir()))  # the training sample: not embedded twice
    image_folder(images, 8, start=40)
    model.embedded = []
    gallery = Gallery.load(tmp_path / "idx", model)
    assert gallery.add(images) == {"added": 8, "duplicates": 40, "replaced": 0}
    assert sorted(os.path.basename(p) for p in model.embedded) == sorted(
        p.name for p in images.iterdir())[40:]  # only the new images were embedded
    changed = sorted(images.iterdir())[0]
    Image.new("RGB", (8, 16), (0, 99, 0)).save(changed)
    assert gallery.add([changed]) == {"added": 0, "duplicates": 0, "replaced": 1}
    gallery.save(tmp_path / "idx")
    gallery = Gallery.load(tmp_path / "idx", model)
    assert len(gallery) == 48 and gallery.meta["index_type"] == "ivfpq"
    target = sorted(images.iterdir())[45]
    assert str(target) in [m.path for m in gallery.search(target, k=8)]  # compressed (4-bit codes): near the top
    assert gallery.remove([target]) == 1
    assert all(m.path != str(target) for m in gallery.search(target, k=48))
    gallery.save(tmp_path / "idx")
    assert str(target) not in json.dumps(Gallery.load(tmp_path / "idx").meta)  # forgotten on disk too


def test_streaming_build_keeps_memory_bounded(tmp_path):
    """Peak Python/numpy memory of a build grows by far less than the features it indexes (chunks of 25),
    while a one-chunk build holds them all. (FAISS's own storage, C++, is not traced: it is the index.)"""
    small, big = image_folder(tmp_path / "small", 200), image_folder(tmp_path / "big", 800)
    model = FakeModel(dim=4096)
    feature_bytes = 4096 * 4  # 16 KiB per image

    def peak(images, chunk_size):
        tracemalloc.start()
        Gallery.build(model, images, index="flat-fp16", chunk_size=chunk_size)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes

    at_once, streamed_small, streamed_big = peak(big, 800), peak(small, 25), peak(big, 25)
    assert at_once - streamed_big > 0.9 * 775 * feature_bytes  # the measure sees the whole gallery's features
    assert streamed_big - streamed_small < 0.1 * 600 * feature_bytes  # 4x the images, about the same peak
    assert model.largest == 800


def test_gallery_search_results_match_exact_for_flat(tmp_path):
    images = image_folder(tmp_path / "g", 24)
    model = FakeModel()
    gallery = Gallery.build(model, images)
    feats = model.embed([str(p) for p in sorted(images.iterdir())])
    query = feats[5]
    _, exact = rank_gallery(query[None], feats, topk=5, backend="faiss")
    assert [m.path for m in gallery.search(query, k=5)] == [str(sorted(images.iterdir())[i]) for i in exact[0]]
