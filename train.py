"""`python train.py ...`: the command pfd.cli.train holds (installed by pip as `pfd-train`; `--help` says more)."""
from pfd.cli.train import main, parse_args

__all__ = ["main", "parse_args"]  # parse_args: for callers that read the options without running

if __name__ == "__main__":
    main()
