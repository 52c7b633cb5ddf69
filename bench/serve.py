"""The search service under concurrent clients: requests/s and the median and 95th-percentile latency.

    python bench/serve.py [--index DIR] [--clients 4] [--requests 200] [--source upload|gallery] [--tiny]

Starts `python -m pfd.serve` on a free loopback port (polling /api/health until it answers), then
`--clients` threads send `--requests` POST /api/search (k = 10) in all, cycling through the gallery's
images: `upload` sends each file's bytes without keypoints under a name no keypoint file lists, to a
server started with `--pose-backend mediapipe` (decode, pose of the photo, embedding, FAISS search: what a
browser's upload of a new photo costs; an index of a pixel backend poses it with its own), `gallery` sends
its index number (the server reads the file and its keypoints by the index's query policy: for the demo,
the synthetic table). Five warm-up requests are not timed; every answer must be 200. Without --index it
builds the demo's model (configs/demo_synthetic.yaml, untrained weights: speed does not depend on
training) and indexes a generated gallery of 79 images in a temp folder; --tiny: 20 requests from 2
clients. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402

DEMO_CONFIG = REPO / "configs" / "demo_synthetic.yaml"
WARMUP = 5
UPLOAD_NAME = "photo.jpg"  # listed by no keypoint file: the server poses the pixels (issue 32's query policy)


def demo_index(root: Path) -> Path:
    """The demo's model with untrained weights and a generated 79-image gallery, indexed into root/index."""
    from pfd.api import Gallery, ReIDModel
    from pfd.config import load_config
    from pfd.data.synthetic import SyntheticConfig, generate
    from pfd.engine.trainer import Trainer

    generate(root / "synthetic", SyntheticConfig(ids_train=16, ids_test=8, images_per_id=8, distractors=5, junk=2,
                                                 seed=1), progress=False)
    opts = ["DATASETS.ROOT_DIR", str(root), "OUTPUT_DIR", str(root / "run"), "MODEL.POSE_CACHE_DIR",
            str(root / "pose_cache"), "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "16"]
    Trainer(load_config(DEMO_CONFIG, opts)).save(0, improved=False)
    model = ReIDModel.from_checkpoint(root / "run" / "last.pth", device="cpu")
    Gallery.build(model, root / "synthetic" / "bounding_box_test").save(root / "index")
    return root / "index"


def gallery_images(index: Path) -> dict[int, str]:
    """{the service's number (the row in the index): path} of the images an index holds; the rows of
    removed images (None in the index's list) are skipped, as the service answers 404 for them."""
    from pfd.retrieval.index_folder import load_index

    return {row: path for row, path in enumerate(load_index(index, use_gpu=False).meta["paths"]) if path is not None}


def start_server(index: Path, log: Path, timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pfd.serve", "--index", str(index), "--port", str(port),
                                 "--device", "cpu", "--pose-backend", "mediapipe"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)  # poll interval
    proc.kill()
    raise SystemExit(f"pfd.serve did not come up:\n{log.read_text()[-3000:]}")


def run(url: str, paths: dict[int, str], source: str, clients: int, requests: int) -> list[float]:
    """Latencies (s) of `requests` searches from `clients` threads, after WARMUP untimed ones; `paths`: the
    gallery's images by the service's numbers (`gallery_images`)."""
    numbers = sorted(paths)

    def ask(client: httpx.Client, i: int) -> float:
        number = numbers[i % len(numbers)]
        start = time.perf_counter()
        if source == "gallery":
            response = client.post("/api/search", data={"gallery": str(number), "k": "10"})
        else:
            files = {"image": (UPLOAD_NAME, Path(paths[number]).read_bytes(), "image/jpeg")}
            response = client.post("/api/search", files=files, data={"k": "10"})
        if response.status_code != 200:
            raise SystemExit(f"request {i}: {response.status_code} {response.text}")
        return time.perf_counter() - start

    with httpx.Client(base_url=url, timeout=300) as client:
        for i in range(WARMUP):
            ask(client, i)
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(lambda i: ask(client, i), range(requests)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="index folder (default: the demo's model, untrained, on a generated gallery)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--source", choices=("upload", "gallery"), default="upload")
    parser.add_argument("--tiny", action="store_true", help="CI-sized: 20 requests from 2 clients")
    args = parser.parse_args(argv)
    if args.tiny:
        args.clients, args.requests = 2, 20
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        index = Path(args.index) if args.index else demo_index(Path(tmp))
        paths = gallery_images(index)
        proc, url = start_server(index, Path(tmp) / "server.log")
        try:
            wall = time.perf_counter()
            latencies = run(url, paths, args.source, args.clients, args.requests)
            wall = time.perf_counter() - wall
            health = httpx.get(url + "/api/health").json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = [1000 * x for x in latencies]
    emit({"source": args.source, "clients": args.clients, "requests": args.requests, "tiny": args.tiny,
          "gallery_size": health["gallery_size"], "model": health["model"], "device": health["device"],
          "upload_pose_backend": health["upload_pose_backend"], "pose_fallback": health["pose_fallback"],
          "cpu_count": os.cpu_count(),
          "requests_per_s": round(args.requests / wall, 2), "median_ms": round(statistics.median(ms), 1),
          "p95_ms": round(statistics.quantiles(ms, n=20, method="inclusive")[18], 1), "max_ms": round(max(ms), 1)})


if __name__ == "__main__":
    main()
