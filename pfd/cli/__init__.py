"""The commands whose main lives nowhere else: `pfd-train`, `pfd-test`, `pfd-query` (pyproject's
[project.scripts]), also run as the top-level `train.py`, `test.py`, `query.py`, which only call them.
The package's other commands keep their `python -m` homes (pfd.pose, pfd.serve, ...); pyproject
installs those too."""
