"""Every reader of an index on a gallery after removals and an `--append` that replaced a changed file
(issue 31 item 1): such rows stay in the index's list as None, which `python -m pfd.serve` turned into a
TypeError at start. The API, `query.py search`, the service (in this process) and bench/serve.py (which
starts the real command and searches it) each read one here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_tiny import build_tiny_index

from pfd.api import Gallery
from pfd.serve import create_app

from engine_tiny import REPO, load_script

REMOVED = (0, 40, 78)  # positions in the sorted gallery folder: the first, one in the middle, the last
CHANGED = 10  # re-saved under its name: `--append` (Gallery.add) replaces its entry
CUT_OFF_FEET = ("1004_c2s1_000005_00.jpg", "1034_c2s1_000005_00.jpg")  # CUHK03 queries, ankles below the crop


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    """The tiny service gallery (79 images) after one changed file was re-added and three images removed."""
    tiny = build_tiny_index(tmp_path_factory.mktemp("removal"))
    folder = tiny["root"] / "synthetic" / "bounding_box_test"
    images = sorted(p.resolve() for p in folder.glob("*.jpg"))
    gallery = Gallery.load(tiny["index"], tiny["model"])
    Image.open(images[CHANGED]).convert("RGB").save(images[CHANGED], quality=60)
    assert gallery.add(folder) == {"added": 0, "duplicates": 78, "replaced": 1}
    removed = [str(images[i]) for i in REMOVED]
    assert gallery.remove(removed) == 3
    gallery.save(tiny["index"])
    live = [p for p in gallery.meta["paths"] if p is not None]
    assert len(gallery.meta["paths"]) == 80 and len(live) == 76 == len(gallery)  # 4 rows of None
    return dict(tiny, removed=removed, live=live, paths=list(gallery.meta["paths"]), changed=str(images[CHANGED]))


def test_the_api_searches_and_grows_a_gallery_after_removals(shrunk):
    gallery = Gallery.load(shrunk["index"])  # its stored model
    matches = gallery.search(shrunk["removed"][0], k=100)
    assert sorted(m.path for m in matches) == sorted(shrunk["live"])
    assert gallery.search(shrunk["changed"], k=1)[0].path == shrunk["changed"]  # its new content, found
    assert gallery.add(shrunk["removed"][:1]) == {"added": 1, "duplicates": 0, "replaced": 0} and len(gallery) == 77


def test_query_py_search_ranks_a_gallery_after_removals(shrunk, tmp_path, capsys):
    picture = tmp_path / "search.png"
    load_script("query").main(["search", "--index", str(shrunk["index"]), "--image", shrunk["removed"][1],
                               "--topk", "100", "--out", str(picture)])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert sorted(row.split()[-1] for row in rows) == sorted(shrunk["live"]) and picture.is_file()


def test_the_service_serves_a_gallery_after_removals(shrunk):
    """Images keep their row numbers in the store; a removed image's number is never reused and answers 404."""
    client = TestClient(create_app(Gallery.load(shrunk["index"], shrunk["model"])))
    health = client.get("/api/health").json()
    assert health["gallery_size"] == 76
    paths = shrunk["paths"]  # row -> path, None where removed or replaced
    for number, path in enumerate(paths):
        response = client.get(f"/api/gallery/{number}")
        if path is None:
            assert response.status_code == 404, number
        else:
            assert response.status_code == 200 and response.content == Path(path).read_bytes(), number
    assert client.get(f"/api/gallery/{len(paths)}").status_code == 404
    fifth = [row for row, path in enumerate(paths) if path is not None][5]
    answer = client.post("/api/search", data={"gallery": str(fifth), "k": "76"}).json()
    assert paths[answer["matches"][0]["index"]] == paths[fifth]
    assert sorted(paths[m["index"]] for m in answer["matches"]) == sorted(shrunk["live"])
    assert all(m["url"] == f"/api/gallery/{m['index']}" for m in answer["matches"])


def test_the_service_poses_uploads_whose_feet_are_cut_off(shrunk, cuhk03_root):
    """Issue 31: BlazePose places the hidden ankles of these crops a few pixels below them; the service
    answered 400 (the keypoint range check) to such uploads sent without keypoints. The synthetic index's
    keypoint file does not list them: mediapipe poses them as the operator's chosen fallback (issue 32)."""
    client = TestClient(create_app(shrunk["gallery"], pose_backend="mediapipe"))  # the gallery before the removals
    for name in CUT_OFF_FEET:
        path = cuhk03_root / "query" / name
        response = client.post("/api/search", files={"image": (name, path.read_bytes(), "image/jpeg")},
                               data={"k": "3"})
        assert response.status_code == 200, response.text
        kps = response.json()["query"]["keypoints"]
        assert response.json()["query"]["pose"] == "mediapipe"
        assert all(y < 128 for _, y, c in kps if c > 0) and any(c > 0 for _, _, c in kps)


@pytest.mark.slow
def test_the_service_command_and_its_bench_on_a_gallery_after_removals(shrunk):
    """bench/serve.py starts `python -m pfd.serve` on the index (the command that exited with a TypeError)
    and needs a 200 to each of its 25 searches by gallery number, over the images the gallery holds."""
    done = subprocess.run([sys.executable, "bench/serve.py", "--tiny", "--source", "gallery", "--index",
                           str(shrunk["index"])], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gallery_size"] == 76 and result["requests"] == 20
