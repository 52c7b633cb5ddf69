"""Retrieval from the command line: build a FAISS index of a folder, then look a person up in it
(`python query.py ...`, or `pfd-query ...` where pip installed the project).

    python query.py index --config CFG --weights W.pth --gallery DIR --out INDEX_DIR
                          [--index-type flat|flat-fp16|ivfpq|pca+ivfpq|opq+ivfpq] [--replace | --append]
                          [--times TIMES.csv]
    python query.py search --index INDEX_DIR --image person.jpg [--topk 10] [--config CFG --weights W.pth]
                           [--cameras 1,3] [--exclude-camera [N]] [--since TIME] [--until TIME]
                           [--keypoints KEYPOINTS.json]

INDEX_DIR may also be a Milvus collection: milvus:PATH.db (Milvus Lite, a local folder) or
milvus://HOST:PORT/COLLECTION (a Milvus server; a token from $PFD_MILVUS_TOKEN).

`index` reads every image under DIR (recursively; ids and cameras parsed from Market-1501 style
names, else -1) and stores the index with a metadata table; `--append` adds a folder's new images to
an existing index, `--replace` builds anew over one (without either, an existing index is refused).
`search` computes the query's pose and feature, prints the ranked list and saves a picture of it; it
refuses an index built by another model or config. The query's keypoints: --keypoints, else the index's
pose backend when it reads pixels (mediapipe, hrnet), else the photo's entry in the keypoint file the
index's poses came from (the synthetic generator's, MODEL.POSE_FILE); the log says which and why.
"""
import argparse
import sys

from pfd.cli.common import add_shared_arguments, one_line_errors, program_name
from pfd.query import build_gallery_index, search_image
from pfd.retrieval.gallery_index import INDEX_KINDS


def camera_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected camera numbers separated by commas, e.g. 1,3; got {text!r}")


def camera_or_query(text: str) -> int | str:
    return text if text == "query" else camera_list(text)[0]


def _spell_out_query_camera(argv: list[str]) -> list[str]:
    """`--exclude-camera` with no number means the query's own camera: spelled out as `query` here, so that
    config overrides right after it (`--exclude-camera MODEL.DEVICE cpu`) are not read as its number."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "--exclude-camera" and not (following == "query" or following.replace(",", "").isdigit()):
            out.append("query")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    """The command and its options; config overrides may come before, between or after the options, as for
    train.py, test.py and pfd.compare (each command's own parser reads them with parse_intermixed_args,
    which argparse does not offer through subparsers)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, commands = _parsers()
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # help, or the usage error naming the commands
    args = commands[argv[0]].parse_intermixed_args(_spell_out_query_camera(argv[1:]))
    args.command = argv[0]
    return args


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    index = add_shared_arguments(sub.add_parser("index", help="extract features of a folder and store a FAISS index"),
                                 config="YAML config of the model", required=True)
    index.add_argument("--weights", required=True, help="checkpoint (ours or a reference PFD one)")
    index.add_argument("--gallery", required=True, help="folder of person images (searched recursively)")
    index.add_argument("--out", required=True, help="index folder to write, or milvus:PATH.db (Milvus Lite) or "
                       "milvus://HOST:PORT/COLLECTION (a Milvus server)")
    index.add_argument("--index-type", choices=tuple(INDEX_KINDS), default="flat",
                       help="flat: exact search; flat-fp16: exact up to rounding, half the memory; ivfpq, pca+ivfpq, "
                            "opq+ivfpq: compressed approximate search for big galleries (opq+ivfpq is the one to use; "
                            "its accuracy and speed against exact search: docs/PERFORMANCE.md); in Milvus Lite "
                            "flat only, on a Milvus server flat, ivfpq, pca+ivfpq, opq+ivfpq")
    index.add_argument("--replace", action="store_true", help="replace the index already in --out")
    index.add_argument("--append", action="store_true",
                       help="add the gallery's images that are not in the index at --out yet (same path and "
                            "content are skipped); --index-type is then the existing index's")
    index.add_argument("--times", metavar="CSV", help="each image's time, for searches --since / --until: rows "
                       "path,timestamp (path relative to --gallery; seconds since 1970 or ISO 8601, no zone = UTC)")

    search = add_shared_arguments(sub.add_parser("search", help="rank an index's images for one query image"),
                                  config="config of the model (default: the one stored with the index)")
    search.add_argument("--index", required=True, help="index folder (or Milvus location) written by `query.py "
                        "index`")
    search.add_argument("--image", required=True, help="query image")
    search.add_argument("--topk", type=int, default=10)
    search.add_argument("--weights", help="checkpoint (default: the one stored with the index)")
    search.add_argument("--out", help="ranking picture path (default: search_<image name>.png in the current "
                             "folder; an existing file is replaced only when it is a picture pfd wrote)")
    search.add_argument("--cameras", type=camera_list, help="only matches from these cameras, numbered as in file "
                        "names (c1 = 1), e.g. 1,3")
    search.add_argument("--exclude-camera", nargs="?", const="query", type=camera_or_query, metavar="N",
                        help="no matches from camera N (as in file names); without N: the query's own camera")
    search.add_argument("--since", help="only matches taken at or after this time (seconds or ISO 8601; needs "
                        "`index --times`)")
    search.add_argument("--until", help="only matches taken at or before this time")
    search.add_argument("--keypoints", metavar="FILE", help="the photo's keypoints: a JSON file of 17 [x, y, "
                        "confidence] rows, COCO order, in its pixels (default: the index's pose backend when it "
                        "reads pixels, else the photo's entry in the index's keypoint file)")
    return parser, {"index": index, "search": search}


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a bad option, file or index: one line, exit status 2
        if args.command == "index":
            build_gallery_index(args.config, args.weights, args.gallery, args.out, args.index_type, args.opts,
                                replace=args.replace, append=args.append, times=args.times)
        else:
            search_image(args.index, args.image, args.topk, args.config, args.weights, args.out, args.opts,
                         cameras=args.cameras, exclude_camera=args.exclude_camera, since=args.since, until=args.until,
                         keypoints=args.keypoints)


if __name__ == "__main__":
    main()
