"""Installed as `straycode.detector` (pyproject package-dir); see guard below."""
if not __name__.startswith("straycode."):
    # Run from the repository root, this folder is also importable as `detector`: the same
    # files would load twice as two different modules (two registries, two caches).
    raise ImportError(f"import 'straycode.detector', not '{__name__}' (this folder is the "
                      f"straycode.detector package; see pyproject.toml [tool.setuptools.package-dir])")
