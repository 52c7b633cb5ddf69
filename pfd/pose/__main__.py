"""`python -m pfd.pose`: runs pfd.cli.pose, the command's home (installed by pip as `pfd-pose`)."""
from pfd.cli.pose import main

if __name__ == "__main__":
    main()
