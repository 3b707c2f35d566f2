"""The one rule for writing an endpoint URL anywhere (dead-letter file, logs, status output).

Endpoint URLs may carry credentials: userinfo (`https://user:pass@host/`) and query-string
values (`?token=...`). Only the scheme, host, port, path and the query *names* are kept;
userinfo becomes `***@` and every query value `***`, so an operator still sees which
endpoint and which parameters were used. The fragment is dropped.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`http://u:p@h:1/p?token=t&x=1#f` -> `http://***@h:1/p?token=***&x=***`; a request
    target (`/p?token=t`, as a receiver sees it) -> `/p?token=***`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:                           # unparsable: show nothing of it
        return MASK
    if ":" in host:
        host = f"[{host}]"                       # IPv6 literal
    netloc = (f"{MASK}@" if "@" in parts.netloc else "") + host
    if port is not None:
        netloc += f":{port}"
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme or netloc else parts.path
    if parts.query:
        names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
        out += "?" + "&".join(f"{name}={MASK}" for name in names) if names else f"?{MASK}"
    return out


def redact_text(text: str, url: str | None = None) -> str:
    """Free text (an error message, a response snippet, a log line) with every URL in it
    redacted, and with the secret parts of `url` masked wherever they appear on their own
    (a server may echo its query string back)."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in _secret_parts(url) if url else ():
        text = text.replace(secret, MASK)
    return text


def _secret_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, *userinfo.split(":", 1)]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [raw.split("=", 1)[1] for raw in parts.query.split("&") if "=" in raw]
    # longest first, so a part contained in another does not leave a tail behind
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """Attached to the loggers of the HTTP stack (httpx logs full request URLs at INFO):
    rewrites each record's message with every URL redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:                        # a malformed record: leave it to logging
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11",
                "httpcore.http2", "httpcore.proxy", "httpcore.socks")


def install_log_redaction(logger_names: tuple[str, ...] = HTTP_LOGGERS) -> None:
    """Idempotent: one RedactingFilter per logger (a logger's filters do not apply to its
    children, hence the explicit list)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
