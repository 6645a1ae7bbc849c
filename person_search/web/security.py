"""Who may talk to the console: loopback by default, a token for anything else."""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Optional

TOKEN_ENV = "PERSON_SEARCH_WEB_TOKEN"
MIN_TOKEN_CHARS = 8
COOKIE = "ps_token"


class BindError(ValueError):
    """The console must not start with these settings (the message says why, in one line)."""


def is_loopback(host: str) -> bool:
    """Return True for 127.0.0.0/8, ::1 and ``localhost``."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def resolve_token(option: Optional[str]) -> str:
    """Return the token from ``--token`` or, if not given, the environment ("" = none)."""
    token = option if option is not None else os.environ.get(TOKEN_ENV, "")
    return token.strip()


def check_bind(host: str, token: str) -> None:
    """Raise BindError unless ``host`` is loopback or a usable token is set (never echoes the token)."""
    if token and len(token) < MIN_TOKEN_CHARS:
        raise BindError(f"the web token must have at least {MIN_TOKEN_CHARS} characters")
    if token and any(c.isspace() or not c.isprintable() for c in token):
        raise BindError("the web token must be printable, without spaces")
    if not is_loopback(host) and not token:
        raise BindError(f"refusing to serve on {host} without a token: anyone who can reach it could watch the "
                        f"cameras; set {TOKEN_ENV} (or --token) or bind to 127.0.0.1")


def token_matches(given: Optional[str], token: str) -> bool:
    """Compare ``given`` with ``token`` in constant time (False when either is empty)."""
    if not given or not token:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def loopback_hosts(port: int) -> frozenset:
    """Return the Host header values a loopback-only console accepts (a guard against DNS rebinding)."""
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset(list(names) + [f"{n}:{port}" for n in names])
