"""`python -m pfd.model.convert`: runs pfd.cli.convert, the command's home (installed by pip as `pfd-convert`)."""
from pfd.cli.convert import main

if __name__ == "__main__":
    main()
