"""Every command's argument parsing and main, one module each: train, test, query, pose, synthetic,
occlude, compare, export, convert and serve, which pip installs as `pfd-NAME` (pyproject's
[project.scripts]), and docs (`make docs`). The top-level scripts (`train.py` ...) and the `python -m`
homes (`pfd/serve/__main__.py` ...) only call them; `common` holds what their parsers share.
"""
