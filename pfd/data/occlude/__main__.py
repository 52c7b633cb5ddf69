"""`python -m pfd.data.occlude`: runs pfd.cli.occlude, the command's home (installed by pip as `pfd-occlude`)."""
from pfd.cli.occlude import main

if __name__ == "__main__":
    main()
