"""`python -m pfd.export`: runs pfd.cli.export, the command's home (installed by pip as `pfd-export`)."""
from pfd.cli.export import main

if __name__ == "__main__":
    main()
