"""`python test.py ...`: the command pfd.cli.test holds (installed by pip as `pfd-test`; `--help` says more)."""
from pfd.cli.test import main, parse_args

__all__ = ["main", "parse_args"]  # parse_args: for callers that read the options without running

if __name__ == "__main__":
    main()
