"""``person-search web``: the operator console beside a running graph."""

from __future__ import annotations

from person_search.web.config import DEFAULT_PORT


def cmd_web(a) -> int:
    """Serve the console until Ctrl-C (exit 2 with one line when the bind rules refuse)."""
    from person_search.web.config import WebConfig
    from person_search.web.security import resolve_token
    from person_search.web.server import serve_standalone
    cfg = WebConfig(host=a.host, port=a.port, query_timeout_s=a.timeout)
    return serve_standalone(cfg, resolve_token(a.token), namespace=a.namespace)


def register(sub) -> None:
    """Add ``web``."""
    sp = sub.add_parser("web", help="serve the operator console (search page, live view, health) over the graph")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; any other needs a token)")
    sp.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    sp.add_argument("--token", default=None,
                    help="access token (default: $PERSON_SEARCH_WEB_TOKEN); required unless the host is loopback")
    sp.add_argument("--namespace", default="", metavar="NS", help="the graph's namespace (default: the root)")
    sp.add_argument("--timeout", type=float, default=15.0,
                    help="seconds a search may take before the page shows an error (default 15)")
    sp.set_defaults(func=cmd_web)
