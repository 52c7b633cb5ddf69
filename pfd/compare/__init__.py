"""`python -m pfd.compare`'s home: its `__main__` runs pfd.cli.compare (installed by pip as `pfd-compare`);
the work is pfd.engine.compare's."""
