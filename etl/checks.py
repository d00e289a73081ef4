"""Checks of the values that reach the wire, made when the definition is read (SPEC §7).

A token with a trailing newline or `\\r\\nX-Injected: 1`, a store id of `../../admin`,
a path with an unknown `{placeholder}`: each would otherwise reach the request line or
a header, or crash mid-run. Each check returns the problem as a short sentence (or
None), never echoing a credential, so the definition error is one safe line.
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

#: What a store id (Yotpo's app_key) may hold: RFC 3986 unreserved characters, so it is
#: one path segment as it is, with nothing to percent-encode and nothing to misread.
_STORE_ID = re.compile(r"^[A-Za-z0-9._~-]{1,255}$")
#: Placeholders `destination.path` may use.
PATH_PLACEHOLDERS = frozenset({"store_id"})


def credential_problem(value: str) -> str | None:
    """A token or secret must be printable ASCII without spaces: it goes into a header."""
    if not value:
        return "must not be empty"
    if any(ch in "\r\n\0" for ch in value):
        return "contains a line break or NUL (a header injection or a stray newline from a file)"
    if any(ch.isspace() for ch in value):
        return "contains whitespace (a stray space or tab?)"
    if not value.isascii():
        return "contains non-ASCII characters (HTTP headers carry ASCII only)"
    if not value.isprintable():
        return "contains control characters"
    return None


def store_id_problem(value: str) -> str | None:
    """A store id is one URL path segment: never `/`, `?`, `#`, `%`, `..` or whitespace."""
    if value in (".", ".."):
        return f"{value!r} is not a store id (it would climb the URL path)"
    if not _STORE_ID.match(value):
        return (
            f"{_printable(value)} is not one URL path segment: use letters, digits "
            "and . _ ~ - only (no / ? # % or spaces)"
        )
    return None


def path_problem(value: str) -> str | None:
    """`destination.path`: a leading `/`, known `{placeholders}`, no query or fragment."""
    if not value.startswith("/"):
        return f"{_printable(value)} must start with '/'"
    if any(ch.isspace() or not ch.isprintable() for ch in value) or not value.isascii():
        return "must be printable ASCII without spaces"
    if "?" in value or "#" in value:
        return "must not hold a query ('?') or a fragment ('#')"
    try:
        fields = [
            name
            for _, name, spec, conv in string.Formatter().parse(value)
            if name is not None or spec or conv
        ]
    except ValueError as exc:  # a lone '{' or '}'
        return f"{_printable(value)}: {exc} (write '{{{{' for a literal brace)"
    unknown = sorted({str(name) for name in fields if name not in PATH_PLACEHOLDERS})
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; known: " + ", ".join(
            f"{{{p}}}" for p in sorted(PATH_PLACEHOLDERS)
        )
    return None


def base_url_problem(value: str) -> str | None:
    """`destination.base_url`: http(s), a host, a valid port; nothing after the path."""
    if any(ch.isspace() or not ch.isprintable() for ch in value) or not value.isascii():
        return "must be printable ASCII without spaces"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{_printable(value)} is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{_printable(value)}: the scheme must be http or https"
    if not parts.hostname:
        return f"{_printable(value)} has no host"
    if port == 0:
        return f"{_printable(value)}: port 0 is not a port"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password (use token or secret)"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "must not hold a query ('?') or a fragment ('#')"
    return None


def _printable(value: str, limit: int = 60) -> str:
    """A value fit for a one-line message: quoted, escaped, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
