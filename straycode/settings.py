"""Configuration: YAML defaults + optional user file + STRAYCODE__A__B env overrides.

Secrets never live in YAML: keys ending in ``_env`` name the environment variable that
holds them, and :func:`secret` reads it at the point of use.
"""
from __future__ import annotations

import copy
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

import yaml

ENV_PREFIX = "STRAYCODE__"


class ConfigError(ValueError):
    """The configuration is invalid (unknown key, wrong type)."""


def _read_yaml(text: str, where: str) -> dict:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    return data


def _merge(base: dict, over: Mapping, where: str, path: str = "") -> dict:
    for key, value in over.items():
        dotted = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown setting '{dotted}'")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise ConfigError(f"{where}: '{dotted}' must be a mapping")
        if base[key] == {}:          # an empty mapping in the defaults is free-form
            base[key] = dict(value)
        elif isinstance(base[key], dict):
            _merge(base[key], value, where, dotted + ".")
        else:
            base[key] = value
    return base


def _env_overrides(env: Mapping[str, str]) -> dict:
    over: dict = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        node = over
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
    return over


def load_settings(path: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> dict:
    """Defaults, then the user's YAML file (`path`), then environment overrides."""
    env = os.environ if env is None else env
    pkg = files("straycode.config")
    settings = _read_yaml(pkg.joinpath("defaults.yaml").read_text(), "defaults.yaml")
    settings["policy"] = _read_yaml(pkg.joinpath("policy.yaml").read_text(), "policy.yaml")
    if path is None and env.get("STRAYCODE_CONFIG"):
        path = env["STRAYCODE_CONFIG"]
    if path is not None:
        _merge(settings, _read_yaml(Path(path).read_text(), str(path)), str(path))
    _merge(settings, _env_overrides(env), "environment")
    return settings


def secret(settings_section: Mapping[str, Any], key: str,
           env: Mapping[str, str] | None = None) -> str | None:
    """Read the secret whose env var name is configured under `key` (e.g. 'secret_env')."""
    env = os.environ if env is None else env
    var = settings_section.get(key)
    return env.get(var) if var else None


def detector_settings(settings: Mapping) -> dict:
    """The part of the settings the pure detector core needs (a plain, copyable dict)."""
    det = copy.deepcopy(dict(settings["detector"]))
    det["policy"] = copy.deepcopy(dict(settings["policy"]))
    return det
