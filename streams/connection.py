"""Broker address and credentials from the `kafka:` settings, for Faust and kafka-python.

The SASL password is read from the environment variable named by
``kafka.sasl_password_env`` at the point of use and is never logged or repr'd.
"""
from __future__ import annotations

import ssl
from typing import Any, Mapping

from straycode.settings import ConfigError, load_settings, secret

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def command_settings(args) -> dict:
    """Settings for a Kafka command: the config, then its --broker / --app-id options."""
    settings = load_settings(args.config)
    kcfg = settings["kafka"]
    if getattr(args, "broker", None):
        kcfg["broker"] = args.broker
    if getattr(args, "app_id", None):
        kcfg["app_id"] = args.app_id
    return settings


def bootstrap_servers(kcfg: Mapping) -> list[str]:
    """'kafka://h1:9092;h2:9092' (Faust style) or 'h1:9092,h2:9092' -> ['h1:9092', 'h2:9092']."""
    url = str(kcfg["broker"])
    hosts = []
    for part in url.replace(",", ";").split(";"):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            hosts.append(part.rstrip("/"))
    if not hosts:
        raise ConfigError(f"kafka.broker {url!r} names no host")
    return hosts


def faust_broker_url(kcfg: Mapping) -> str:
    return ";".join(f"kafka://{h}" for h in bootstrap_servers(kcfg))


def _protocol(kcfg: Mapping) -> str:
    proto = str(kcfg.get("security_protocol") or "PLAINTEXT").upper()
    if proto not in PROTOCOLS:
        raise ConfigError(f"kafka.security_protocol {proto!r} not one of {PROTOCOLS}")
    return proto


def ssl_context(kcfg: Mapping) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=kcfg.get("ssl_cafile") or None)


def _password(kcfg: Mapping, env: Mapping[str, str] | None) -> str:
    password = secret(kcfg, "sasl_password_env", env)
    if not password:
        raise ConfigError(f"SASL needs the password in ${kcfg.get('sasl_password_env')}")
    return password


def faust_credentials(kcfg: Mapping, env: Mapping[str, str] | None = None):
    """faust credentials object, or None for PLAINTEXT."""
    import faust

    proto = _protocol(kcfg)
    if proto == "PLAINTEXT":
        return None
    if proto == "SSL":
        return faust.SSLCredentials(ssl_context(kcfg))
    return faust.SASLCredentials(
        username=kcfg.get("sasl_username"), password=_password(kcfg, env),
        mechanism=kcfg.get("sasl_mechanism") or "PLAIN",
        ssl_context=ssl_context(kcfg) if proto == "SASL_SSL" else None)


def client_kwargs(kcfg: Mapping, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for kafka-python / aiokafka clients (same names in both)."""
    proto = _protocol(kcfg)
    kwargs: dict[str, Any] = {"bootstrap_servers": bootstrap_servers(kcfg),
                              "security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(kcfg)
    if proto.startswith("SASL"):
        kwargs.update(sasl_mechanism=kcfg.get("sasl_mechanism") or "PLAIN",
                      sasl_plain_username=kcfg.get("sasl_username"),
                      sasl_plain_password=_password(kcfg, env))
    return kwargs
