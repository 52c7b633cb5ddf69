"""`python -m pfd.data.synthetic`: runs pfd.cli.synthetic, the command's home (installed by pip as `pfd-synthetic`)."""
from pfd.cli.synthetic import main

if __name__ == "__main__":
    main()
