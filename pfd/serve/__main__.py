"""`python -m pfd.serve`: runs pfd.cli.serve, the command's home (installed by pip as `pfd-serve`)."""
from pfd.cli.serve import main

if __name__ == "__main__":
    main()
