"""`python -m pfd.export` (installed by pip as `pfd-export`): a checkpoint's eval-mode model to an ONNX file;
its help is pfd.export's account of the graph and its check."""
import argparse

import pfd.export
from pfd.cli.common import command_parser, one_line_errors
from pfd.export import CHECK_BATCHES, TIE_MARGIN, TOLERANCE, claim_onnx_path, export_onnx


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(pfd.export.__doc__, config="YAML config (default: the one our checkpoints store; "
                                                       "required for reference checkpoints)")
    parser.add_argument("--weights", required=True, help="checkpoint (ours, or a reference PFD/TransReID one)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> None:
    from pfd.api import ReIDModel
    from pfd.engine.logger import setup_logger

    args = parse_args(argv)
    setup_logger(None)
    with one_line_errors(args):  # a bad checkpoint, config or --out: one line, exit status 2
        claim_onnx_path(args.out)  # before the model loads; export_onnx checks it again (the API's path)
        model = ReIDModel.from_checkpoint(args.weights, args.config, device="cpu", opts=args.opts)
        cfg = model.cfg
        report = export_onnx(model.model, args.out, cfg.INPUT.SIZE_TEST, cfg.INPUT.HEATMAP_SIGMA, model.num_cameras)
    print(f"exported {cfg.MODEL.NAME} ({report['feature_dim']}-d features, opset {report['opset']}) to "
          f"{report['path']} in {report['export_seconds']:.1f} s; onnxruntime vs PyTorch relative difference "
          f"{report['relative_difference']:.2e} (tolerance {TOLERANCE:g}) on batches of "
          f"{', '.join(map(str, CHECK_BATCHES))}", flush=True)
    if report["near_ties"]:
        print(f"{report['near_ties']} of {report['samples']} checked samples have a near-tie PFA/PVM matching "
              f"(similarity gap < {TIE_MARGIN:g}), where rounding may pick another view: for them only the first "
              f"{model.model.matching_free_dim} values (g_bn, l_i_bn) were compared", flush=True)


if __name__ == "__main__":
    main()
