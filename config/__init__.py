"""Declarative defaults and policy (YAML). Loaded by straycode.settings; no code lives here."""
