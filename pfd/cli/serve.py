"""Serve a saved gallery (`query.py index` / `Gallery.save`) to a browser and over HTTP.

    python -m pfd.serve --index demo_output/index [--host 127.0.0.1] [--port 8000] [--device auto]
    python -m pfd.serve --index milvus:demo_output/gallery.db   (a gallery in Milvus: pfd.retrieval.milvus_store)

Open http://127.0.0.1:8000/ for the page; the JSON API is under /api (see pfd/serve/app.py). The model
is the one the index was built with (its stored config and checkpoint), loaded once. There is no
authentication: the server binds to 127.0.0.1 unless --host says otherwise; put it behind a proxy that
authenticates before exposing it. (Installed by pip as `pfd-serve`.)
"""
import argparse
import logging
import socket

from pfd.cli.common import command_parser, one_line_errors
from pfd.errors import InvalidInputError
from pfd.pose.base import PIXEL_BACKENDS  # the backends that can pose any photo (the fallback's choices)


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("--index", required=True, help="index folder written by `query.py index` or Gallery.save "
                        "(manifest.json and its version folder), or a Milvus collection: milvus:PATH.db (Milvus "
                        "Lite) or milvus://HOST:PORT/COLLECTION")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--pose-backend", choices=PIXEL_BACKENDS, default=None,
                        help="for an index whose poses came from a keypoint file (synthetic, file): the pose "
                             "estimator for a photo sent without keypoints that the file does not list, named in "
                             "each such answer (default: none, such a photo is refused with a message saying how "
                             "to send keypoints). An index of a backend that reads pixels poses every photo itself")
    parser.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MiB (default 8)")
    parser.add_argument("--max-pixels", type=int, default=16_000_000,
                        help="largest photo in width x height pixels (default 16,000,000)")
    parser.add_argument("--max-k", type=int, default=100, help="most matches per request (default 100)")
    return parser.parse_intermixed_args(argv)


def check_port(host: str, port: int) -> None:
    """Bind `host`:`port` once, as uvicorn will (SO_REUSEADDR), and let it go: a port out of range, in use or
    not allowed is an InvalidInputError now, one line before the model loads, not uvicorn's after it."""
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"--port {port}: expected a TCP port number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise InvalidInputError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise InvalidInputError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); choose "
                                    "another --port, or stop the program that uses it") from None


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a missing or damaged index, a bad flag: one line, exit status 2
        if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.max_k <= 0:
            raise InvalidInputError("--max-upload-mb, --max-pixels and --max-k must be positive")
        check_port(args.host, args.port)  # before the model loads (seconds to minutes)
        import uvicorn

        from pfd.api import Gallery, ReIDModel
        from pfd.serve import Limits, create_app

        gallery = Gallery.load(args.index)
        if not gallery.meta.get("weights"):
            raise InvalidInputError(f"{args.index}: the index names no checkpoint (meta.json key 'weights'); "
                                    "rebuild it with `python query.py index ...`")
        gallery.use_model(ReIDModel.from_checkpoint(gallery.meta["weights"], gallery.stored_config(),
                                                    device=args.device))
        limits = Limits(max_bytes=int(args.max_upload_mb * 2 ** 20), max_pixels=args.max_pixels, max_k=args.max_k)
        app = create_app(gallery, limits, args.pose_backend)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    print(f"serving {len(gallery)} gallery images of {args.index} on http://{args.host}:{args.port}/ "
          "(no authentication; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
