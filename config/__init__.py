"""Declarative defaults, policy (YAML) and the settings schema (JSON). Loaded by
straycode.settings as `straycode.config`; no code lives here."""
if not __name__.startswith("straycode."):
    raise ImportError(f"import 'straycode.config', not '{__name__}' (this folder is the "
                      f"straycode.config package; see pyproject.toml [tool.setuptools.package-dir])")
