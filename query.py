"""`python query.py ...`: the command pfd.cli.query holds (installed by pip as `pfd-query`; `--help` says more)."""
from pfd.cli.query import main, parse_args

__all__ = ["main", "parse_args"]  # parse_args: for callers that read the options without running

if __name__ == "__main__":
    main()
