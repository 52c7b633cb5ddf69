"""`python -m pfd.serve` over the tiny test gallery, in a subprocess on a loopback port: searches equal
Gallery.search, bad input gets a one-line 4xx and the server keeps serving, no request path reaches the
file system, concurrent clients all get correct answers, and the page works in headless Chromium."""
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_tiny import artefact_dir, browser_page, build_tiny_index, running_server

from pfd.api import parse_name
from pfd.pose.formats import read_project_json
from pfd.serve import Limits
from pfd.serve.app import relative_path

pytestmark = pytest.mark.slow  # a uvicorn server process and a headless browser

K = 5
# Small limits, so that a small file can exceed them: 60 KB, 100,000 pixels (a 128 x 64 crop is 8,192).
LIMIT_FLAGS = ("--max-upload-mb", str(60_000 / 2 ** 20), "--max-pixels", "100000", "--max-k", "50")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_index(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with running_server(tiny["index"], log, *LIMIT_FLAGS) as url:
        yield url


def query_paths(tiny) -> list[Path]:
    return sorted((tiny["root"] / "synthetic" / "query").glob("*.jpg"))


def expected(tiny, path: Path, k: int = K) -> list[tuple[str, int, int, float]]:
    """Gallery.search's answer for the image file: keypoints from the model's backend, camera from the name."""
    matches = tiny["gallery"].search(str(path), k)
    return [(m.path, m.id, m.camera, m.distance) for m in matches]


def upload(url: str, path: Path, **fields) -> httpx.Response:
    """POST /api/search with the file's bytes; `fields` as form fields (k, keypoints, camera)."""
    files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
    return httpx.post(url + "/api/search", files=files, data={k: str(v) for k, v in fields.items()}, timeout=60)


def assert_same(answer: dict, tiny, reference) -> None:
    paths = tiny["gallery"].meta["paths"]
    got = [(paths[m["index"]], m["id"], m["camera"]) for m in answer["matches"]]
    assert got == [r[:3] for r in reference]
    np.testing.assert_allclose([m["distance"] for m in answer["matches"]], [r[3] for r in reference], atol=1e-4)


def test_health_names_the_model_and_the_gallery(server, tiny):
    health = httpx.get(server + "/api/health").json()
    model = tiny["model"]
    assert health["status"] == "ok" and health["gallery_size"] == 79 == len(tiny["gallery"])
    assert health["config_hash"] == model.config_hash and health["model_id"] == model.model_id[:12]
    assert (health["model"], health["device"], health["weights"]) == ("pfd", "cpu", "last.pth")
    assert health["max_k"] == 50 and health["max_pixels"] == 100000
    # the index's synthetic keypoints give an upload the keypoints its file lists; no fallback chosen
    assert (health["upload_pose_backend"], health["pose_fallback"]) == ("synthetic", None)


def test_an_upload_with_keypoints_gets_gallery_search_s_answer(server, tiny):
    path = query_paths(tiny)[0]
    kps = tiny["model"].keypoints(str(path))[0]  # [17, 3] what Gallery.search uses for the file
    response = upload(server, path, k=K, keypoints=json.dumps(kps.tolist()))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_same(answer, tiny, expected(tiny, path))
    query = answer["query"]
    pid, camera = parse_name(path)
    assert (query["id"], query["camera"], query["pose"], query["source"]) == (pid, camera, "request", "upload")
    np.testing.assert_allclose(query["keypoints"], kps, atol=0.01)
    assert query["visible_keypoints"] == int((kps[:, 2] >= tiny["model"].cfg.MODEL.SKT_THRES).sum())
    first = answer["matches"][0]
    assert first["path"] == Path(tiny["gallery"].meta["paths"][first["index"]]).name  # relative to the gallery root
    assert first["url"] == f"/api/gallery/{first['index']}"
    image = httpx.get(server + first["url"])
    served = Path(tiny["gallery"].meta["paths"][first["index"]]).read_bytes()
    assert image.status_code == 200 and image.content == served


def test_a_gallery_image_by_number_and_an_upload_without_keypoints(server, tiny):
    number = 17
    path = Path(tiny["gallery"].meta["paths"][number])
    response = httpx.post(server + "/api/search", data={"gallery": str(number), "k": "3"}, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_same(answer, tiny, expected(tiny, path, 3))
    assert answer["matches"][0]["index"] == number and answer["query"]["pose"] == "synthetic"

    photo = query_paths(tiny)[1]
    plain = upload(server, photo, k=3).json()  # no keypoints: the generator's, found by the upload's file name
    assert plain["query"]["pose"] == "synthetic"
    assert plain["query"]["pose_reason"] == f"query/{photo.name} in keypoints.json, the index's synthetic keypoints"
    truth = read_project_json(tiny["root"] / "synthetic" / "keypoints.json")[str(photo)]
    np.testing.assert_allclose(plain["query"]["keypoints"], truth, atol=0.01)
    assert_same(plain, tiny, expected(tiny, photo, 3))  # Gallery.search of the file: the same keypoints


def bad_requests(tiny, tmp: Path) -> list[tuple[str, dict, dict, int, str]]:
    """(case, files, data, expected status, words of the message) for every bad input."""
    good = query_paths(tiny)[0]
    notes = (tmp / "notes.txt")
    notes.write_text("not an image")
    big_pixels = tmp / "wide.png"
    Image.new("RGB", (500, 300)).save(big_pixels)  # 150,000 pixels, a small file
    big_bytes = tmp / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(big_bytes)  # 120 KB
    assert big_pixels.stat().st_size < 60_000 < big_bytes.stat().st_size

    def file(path):
        return {"image": (path.name, path.read_bytes(), "image/jpeg")}

    return [
        ("not an image", file(notes), {}, 400, "not an image"),
        ("empty upload", {"image": ("empty.jpg", b"", "image/jpeg")}, {}, 400, "empty"),
        ("over the byte limit", file(big_bytes), {}, 413, "--max-upload-mb"),
        ("over the pixel limit", file(big_pixels), {}, 413, "--max-pixels"),
        ("keypoints not JSON", file(good), {"keypoints": "[[1, 2"}, 400, "keypoints: not JSON"),
        ("keypoints of the wrong shape", file(good), {"keypoints": "[[1, 2, 0.5]]"}, 400, "shape [17, 3]"),
        ("keypoints with NaN", file(good), {"keypoints": json.dumps([[1, 2, 0.5]] * 16 + [["NaN", 1, 1]])}, 400, "NaN"),
        ("keypoints not numbers", file(good), {"keypoints": json.dumps([["a", 2, 1]] * 17)}, 400, "keypoints"),
        ("k zero", file(good), {"k": "0"}, 400, "k: expected 1 to 50"),
        ("k over the limit", file(good), {"k": "51"}, 400, "k: expected 1 to 50"),
        ("k not a number", file(good), {"k": "ten"}, 422, "k:"),
        ("camera out of range", file(good), {"camera": "99"}, 400, "camera"),
        ("neither image nor gallery", {}, {"k": "3"}, 400, "either an image"),
        ("both image and gallery", file(good), {"gallery": "1"}, 400, "either an image"),
        ("unknown gallery number", {}, {"gallery": "79"}, 404, "no such image"),
        ("negative gallery number", {}, {"gallery": "-1"}, 404, "no such image"),
        ("a path as gallery number", {}, {"gallery": "../index/meta.json"}, 422, "gallery"),
    ]


def test_bad_input_gets_a_one_line_4xx_and_the_server_keeps_serving(server, tiny, tmp_path):
    for case, files, data, status, words in bad_requests(tiny, tmp_path):
        response = httpx.post(server + "/api/search", files=files or None, data=data, timeout=60)
        assert response.status_code == status, (case, response.text)
        error = response.json()["error"]
        assert words in error and "\n" not in error, (case, error)
    for route, status in (("/api/nothing", 404), ("/api/gallery/79", 404), ("/api/gallery/x", 422)):
        response = httpx.get(server + route)
        assert response.status_code == status and set(response.json()) == {"error"}, route
    assert httpx.get(server + "/api/health").json()["status"] == "ok"
    assert upload(server, query_paths(tiny)[0], k=2).status_code == 200


TRAVERSALS = ("/api/gallery/../../../../etc/passwd", "/api/gallery/..%2F..%2F..%2Fetc%2Fpasswd",
              "/api/gallery/%2Fetc%2Fpasswd", "/api/gallery//etc/passwd", "/api/gallery/0/../../../etc/passwd",
              "/static/../app.py", "/static/..%2Fapp.py", "/static/%2e%2e/%2e%2e/api.py", "/static//etc/passwd",
              "/static/%2Fetc%2Fpasswd", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd")


@pytest.mark.parametrize("target", TRAVERSALS)
def test_no_request_path_reaches_the_file_system(server, target):
    """Raw request targets (http.client sends them as written; httpx would normalize the dots)."""
    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", target)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert 400 <= response.status < 500, (target, response.status)
    assert b"root:" not in body and b"import" not in body and len(body) < 500, (target, body[:200])


def test_four_concurrent_clients_get_correct_answers(server, tiny):
    """200 requests from 4 threads: uploads with keypoints and gallery numbers, each answer equal to
    Gallery.search for that image."""
    queries = query_paths(tiny)[:10]
    numbers = [3, 20, 41, 60, 78]
    kps = {p: json.dumps(tiny["model"].keypoints(str(p))[0].tolist()) for p in queries}
    reference = {p: expected(tiny, p) for p in queries}
    reference.update({n: expected(tiny, Path(tiny["gallery"].meta["paths"][n])) for n in numbers})
    jobs = [queries[i % 10] if i % 3 else numbers[i % 5] for i in range(200)]

    def ask(client: httpx.Client, job):
        if isinstance(job, Path):
            files = {"image": (job.name, job.read_bytes(), "image/jpeg")}
            return job, client.post("/api/search", files=files, data={"k": str(K), "keypoints": kps[job]})
        return job, client.post("/api/search", data={"k": str(K), "gallery": str(job)})

    with httpx.Client(base_url=server, timeout=120) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda job: ask(client, job), jobs))
    assert len(answers) == 200
    for job, response in answers:
        assert response.status_code == 200, response.text
        assert_same(response.json(), tiny, reference[job])


def test_relative_paths_and_the_limits():
    paths = ["/data/g/a/1.jpg", "/data/g2/2.jpg", "/elsewhere/3.jpg"]
    assert [relative_path(p, "/data/g") for p in paths] == ["a/1.jpg", "2.jpg", "3.jpg"]  # outside: the file name
    assert relative_path("/x/1.jpg", None) == "1.jpg"
    assert Limits().max_k == 100


def test_the_page_searches_an_upload_in_chromium(server, tiny, tmp_path_factory):
    """Headless Chromium opens /, uploads a query photo; k result images render, the first one's id is the
    API's, and the page says which keypoints were used and why. The screenshot is kept (PFD_TEST_ARTEFACTS
    or pytest's tmp dir)."""
    path = query_paths(tiny)[2]
    api = upload(server, path, k=K).json()  # the page sends no keypoints either
    api_first = api["matches"][0]
    with browser_page() as page:
        page.goto(server + "/")
        page.wait_for_function("document.querySelectorAll('#samples img').length > 0")
        page.fill("#k", str(K))
        page.set_input_files("#file", str(path))
        page.wait_for_function("document.body.dataset.state === 'done'", timeout=60_000)
        page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
        widths = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == K and all(w > 0 for w in widths)
        assert int(page.get_attribute("#results li", "data-id")) == api_first["id"]
        assert page.eval_on_selector("#query-canvas", "c => c.width") > 0
        assert page.text_content("#query-pose") == f"keypoints: {api['query']['pose_reason']}"
        assert api["query"]["pose_reason"].startswith(f"query/{path.name} in keypoints.json")
        assert "poses: synthetic" in page.text_content("#health")
        shot = artefact_dir(tmp_path_factory) / "serve_page.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
