"""One logging setup for every `straycode` command: log lines cannot be forged.

Fields from input (user ids, session ids, URLs, reasons) end up in log messages. A user
id carrying "\\n2026-... WARNING straycode: ..." or terminal escape sequences would forge
a log line or rewrite the analyst's terminal. :class:`SafeFormatter` escapes every
control character (C0, DEL, C1 and the Unicode line/paragraph separators) in the
rendered record, so one record is always one line; an attached traceback keeps its line
breaks, but each of its lines is indented so that none can pass for a record of its own.
"""
from __future__ import annotations

import logging
import re
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    ch = match.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape (\\n, \\x1b, ...)."""
    return _CONTROL.sub(_escape_char, text)


def _indented(block: str) -> str:
    return "\n".join("    " + escape(line) for line in block.splitlines())


class SafeFormatter(logging.Formatter):
    """A Formatter whose every record renders as exactly one line (plus indented traceback)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # like logging.Formatter.format, but never reuses record.exc_text: another handler
        # may have cached it unescaped
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info:
            text += "\n" + _indented(self.formatException(record.exc_info))
        elif record.exc_text:
            text += "\n" + _indented(record.exc_text)
        if record.stack_info:
            text += "\n" + _indented(self.formatStack(record.stack_info))
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: int | str = logging.WARNING) -> logging.Handler:
    """Install the one stderr handler with :class:`SafeFormatter` on the root logger
    (replacing an earlier one of ours, leaving other handlers alone) and set the level of
    the ``straycode`` loggers. Safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    root.addHandler(handler)
    logging.getLogger("straycode").setLevel(level)
    return handler


def make_handlers_safe(logger: logging.Logger) -> None:
    """Give every handler of `logger` a :class:`SafeFormatter` (for handlers installed by
    someone else, e.g. the Faust worker's own logging setup)."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, SafeFormatter):
            handler.setFormatter(SafeFormatter(FORMAT))
