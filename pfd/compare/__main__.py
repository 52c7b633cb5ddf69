"""`python -m pfd.compare`: runs pfd.cli.compare, the command's home (installed by pip as `pfd-compare`)."""
from pfd.cli.compare import main

if __name__ == "__main__":
    main()
