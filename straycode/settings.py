"""Configuration: YAML defaults + optional user file + STRAYCODE__A__B env overrides,
validated once at start-up.

Every command gets its settings from :func:`load_settings`, which merges the layers,
remembers where each value came from (``defaults.yaml``, the --config file, or the name
of the environment variable), then checks the whole tree against
``config/settings.schema.json`` (types, ranges, enums, no unknown keys) and the few
cross-field rules below. Any problem is one :class:`ConfigError` naming the dotted key,
its source and what was expected; ``straycode.cli`` prints it and exits with status 2.

Secrets never live in YAML: keys ending in ``_env`` name the environment variable that
holds them, and :func:`secret` reads it at the point of use.
"""
from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from straycode.detector.rules import SEVERITIES

ENV_PREFIX = "STRAYCODE__"
DEFAULTS = "defaults.yaml"


class ConfigError(ValueError):
    """The configuration is invalid (unknown key, wrong type, out of range, unreadable)."""


# --------------------------------------------------------------------------- reading

def _read_yaml(text: str, where: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping, not {type(data).__name__}")
    return data


def _read_file(path: str | os.PathLike, where: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    return _read_yaml(text, where)


def _merge(base: dict, over: Mapping, source, sources: dict[str, str], path: str = "") -> dict:
    """Merge `over` into `base` in place; `source(dotted)` names where a value came from
    and is recorded in `sources` for every value set."""
    for key, value in over.items():
        dotted = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"unknown setting '{dotted}' (from {source(dotted)})")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise ConfigError(f"{dotted} = {_show(value)} (from {source(dotted)}): "
                              "expected a mapping")
        if base[key] == {}:          # an empty mapping in the defaults is free-form
            base[key] = dict(value)
            sources[dotted] = source(dotted)
            sources.update({f"{dotted}.{k}": source(f"{dotted}.{k}") for k in value})
        elif isinstance(base[key], dict):
            _merge(base[key], value, source, sources, dotted + ".")
        else:
            base[key] = value
            sources[dotted] = source(dotted)
    return base


def _env_overrides(env: Mapping[str, str]) -> tuple[dict, dict[str, str]]:
    """STRAYCODE__SECTION__KEY=value (YAML-parsed) -> (nested overrides, dotted -> var name)."""
    over: dict = {}
    names: dict[str, str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        where = f"environment variable {name}"
        if not parts:
            raise ConfigError(f"{where}: names no setting "
                              f"(expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}DETECTOR__VERIFY_WINDOW_S)")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"{where}: value is not valid YAML: {problem}") from None
        node = over
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: conflicts with the variable that sets "
                                  f"'{'.'.join(parts[:i + 1])}' as a whole")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"{where}: conflicts with the variables that set keys inside it")
        node[parts[-1]] = value
        names[".".join(parts)] = name
    return over, names


def load_settings(path: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> dict:
    """Defaults, then the user's YAML file (`path`), then environment overrides; validated.

    Raises ConfigError (one line: dotted key, source, what was expected) on any problem."""
    env = os.environ if env is None else env
    pkg = files("straycode.config")
    sources: dict[str, str] = {}
    settings = _read_yaml(pkg.joinpath(DEFAULTS).read_text(), DEFAULTS)
    settings["policy"] = _read_yaml(pkg.joinpath("policy.yaml").read_text(), "policy.yaml")
    where = None
    if path is None and env.get("STRAYCODE_CONFIG"):
        path, where = env["STRAYCODE_CONFIG"], f"config file {env['STRAYCODE_CONFIG']} (STRAYCODE_CONFIG)"
    if path is not None:
        where = where or f"config file {path}"
        _merge(settings, _read_file(path, where), lambda _d: where, sources)
    over, names = _env_overrides(env)

    def env_source(dotted: str) -> str:
        # a key inside a mapping value comes from the variable that set the mapping
        key = dotted
        while key and key not in names:
            key = key.rpartition(".")[0]
        if key:
            return f"environment variable {names[key]}"
        inner = sorted(names[k] for k in names if k.startswith(dotted + "."))
        return f"environment variable{'s' if len(inner) > 1 else ''} {', '.join(inner)}"

    _merge(settings, over, env_source, sources)
    validate(settings, sources)
    return settings


# --------------------------------------------------------------------------- checking

@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("straycode.config").joinpath("settings.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema() -> dict:
    """The settings JSON Schema (config/settings.schema.json)."""
    return _validator().schema


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _source(dotted: str, sources: Mapping[str, str]) -> str:
    key = dotted
    while key:
        if key in sources:
            return sources[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return DEFAULTS if not dotted.startswith("policy") else "policy.yaml"


def _describe(s: Mapping) -> str:
    """What a (sub)schema accepts, in words: 'an integer >= 0', 'one of ocsf, native, both'."""
    if "$ref" in s:
        return _describe(_validator().schema["$defs"][s["$ref"].rsplit("/", 1)[1]])
    if "enum" in s:
        return "one of " + ", ".join(str(v) for v in s["enum"])
    if "anyOf" in s:
        return " or ".join(_describe(sub) for sub in s["anyOf"])
    kind = s.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind == "object":
        return "a mapping"
    if kind == "array":
        n = (s.get("minItems"), s.get("maxItems"))
        size = f" of {n[0]} items" if n[0] is not None and n[0] == n[1] else \
            f" of at least {n[0]} item(s)" if n[0] else ""
        return f"a list{size}" + (f", each {_describe(s['items'])}" if "items" in s else "")
    if "pattern" in s and "description" in s:
        return s["description"]
    text = {"integer": "an integer", "number": "a number", "string": "a string"}.get(kind, "a value")
    bounds = [f"{op} {s[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                            ("maximum", "<="), ("exclusiveMaximum", "<"))
              if k in s]
    if kind == "string" and s.get("minLength"):
        text = "a non-empty string"
    if "pattern" in s:
        text += f" matching {s['pattern']}"
    return text + (" " + " and ".join(bounds) if bounds else "")


def _explain(err: jsonschema.ValidationError, sources: Mapping[str, str]) -> str:
    dotted = _dotted(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = set((err.schema.get("properties") or {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        key = f"{dotted}.{extra[0]}" if dotted else extra[0]
        return f"unknown setting '{key}' (from {_source(key, sources)})"
    if err.validator == "required":
        return f"{dotted} (from {_source(dotted, sources)}): {err.message}"
    where = _source(dotted, sources)
    return f"{dotted} = {_show(err.instance)} (from {where}): expected {_describe(err.schema)}"


def _cross_checks(s: Mapping) -> list[tuple[str, str, str]]:
    """Rules between keys that the schema cannot express: (key, what it must be, other key)."""
    problems = []
    det = s["detector"]
    for lower, upper in zip(SEVERITIES, SEVERITIES[1:]):        # thresholds increase
        if not det["severity"][lower] < det["severity"][upper]:
            problems.append((f"detector.severity.{lower}", "below", f"detector.severity.{upper}"))
    for key in ("fanout_ip_users", "fanout_network_users", "bombing_codes"):
        if det[key][0] > det[key][1]:                             # [warn, strong]
            problems.append((f"detector.{key}[0]", "at most", f"detector.{key}[1]"))
    if det["weights"]["term_min"] > det["weights"]["term_max"]:
        problems.append(("detector.weights.term_min", "at most", "detector.weights.term_max"))
    names = [ep["name"] for ep in s["hooks"]["endpoints"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append((f"hooks.endpoints[{i}].name", "different from",
                             f"hooks.endpoints[{names.index(name)}].name"))
    if s["kafka"]["broker_heartbeat_interval"] >= s["kafka"]["broker_session_timeout"]:
        problems.append(("kafka.broker_heartbeat_interval", "below", "kafka.broker_session_timeout"))
    return problems


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


def validate(settings: Mapping, sources: Mapping[str, str] | None = None) -> None:
    """Schema + cross-field checks; raises one ConfigError describing the first problem
    (by key order) and how many more there are."""
    sources = sources or {}
    errors = sorted(_validator().iter_errors(settings),
                    key=lambda e: (_dotted(e.absolute_path), e.validator))
    messages = [_explain(e, sources) for e in errors]
    if not messages:
        def at(key: str) -> str:
            return f"{key} = {_show(_get(settings, key))} (from {_source(key, sources)})"
        messages = [f"{at(key)}: expected {rel} {at(other)}"
                    for key, rel, other in _cross_checks(settings)]
    if messages:
        more = f" (and {len(messages) - 1} more problem(s))" if len(messages) > 1 else ""
        raise ConfigError(messages[0] + more)


# --------------------------------------------------------------------------- using

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
