"""The thin scripts accept their options before or after the KEY VALUE overrides."""
from engine_tiny import load_script


def test_train_resume_after_overrides():
    args = load_script("train").parse_args(["--config", "c.yaml", "SOLVER.BASE_LR", "0.1", "--resume"])
    assert (args.config, args.resume, args.opts) == ("c.yaml", "auto", ["SOLVER.BASE_LR", "0.1"])
    args = load_script("train").parse_args(["--config", "c.yaml", "--resume", "x.pth", "SOLVER.SEED", "-1"])
    assert (args.resume, args.opts) == ("x.pth", ["SOLVER.SEED", "-1"])


def test_test_config_after_overrides():
    args = load_script("test").parse_args(["TEST.WEIGHT", "w.pth", "--config", "c.yaml"])
    assert (args.config, args.opts) == ("c.yaml", ["TEST.WEIGHT", "w.pth"])


def test_query_options_after_overrides():
    args = load_script("query").parse_args(["search", "--index", "idx", "--image", "p.jpg", "MODEL.DEVICE", "cpu",
                                            "--topk", "3"])
    assert (args.topk, args.opts) == (3, ["MODEL.DEVICE", "cpu"])
