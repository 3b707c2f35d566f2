"""Installed as `straycode.models` (pyproject package-dir); see guard below."""
if not __name__.startswith("straycode."):
    # Run from the repository root, this folder is also importable as `models`: the same
    # files would load twice as two different modules (two registries, two caches).
    raise ImportError(f"import 'straycode.models', not '{__name__}' (this folder is the "
                      f"straycode.models package; see pyproject.toml [tool.setuptools.package-dir])")
