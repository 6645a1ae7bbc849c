"""The HTTP side: the page, its assets and the JSON API (aiohttp).

Routes (all GET; errors are ``{"error": message}`` with the status code):

==================================  ======================================================
``/``                               the page (``/?q=TEXT`` opens with that search done)
``/static/{app.js,style.css,...}``  the page's assets, from the package
``/api/info``                       namespace, services, what the graph offers (re-id)
``/api/search?q=...``               matches with crop / frame URLs (filters: top_k,
                                    min_score, camera, last_min, since, until, frames, by)
``/api/tracks/{camera}/{id}``       one track: its last answer and its timeline
``/api/similar?camera=&track_id=``  find similar (re-id graphs only; 501 elsewhere)
``/api/images/{id}``                a crop or frame of an answer (JPEG, opaque id)
``/api/timeline/{id}``              a crop or frame of a track timeline (JPEG, opaque id)
``/api/cameras``                    the cameras seen (overlay topics) with rate and age
``/api/cameras/{name}/latest.jpg``  the newest overlay frame (``?after=SEQ``: 204 if none newer)
``/api/health``                     every stage's /diagnostics, stalled stages flagged
==================================  ======================================================
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from importlib import resources
from typing import Dict
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from person_search.web.params import RequestError, check_camera, parse_search, parse_top_k, parse_track_id
from person_search.web.security import COOKIE, loopback_hosts, token_matches
from person_search.web.store import ID_CHARS

log = logging.getLogger(__name__)

STATIC = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
ID_RE = re.compile(r"^[A-Za-z0-9_-]{%d}$" % ID_CHARS)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
BRIDGE = web.AppKey("bridge", object)
TOKEN = web.AppKey("token", str)
ASSETS = web.AppKey("assets", dict)
PORT = web.AppKey("port", int)
TILE_WIDTH = web.AppKey("tile_width", int)


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string, which may hold a token), status and time, at debug level."""

    def log(self, request, response, time_s):
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s %s %s %.1f ms", request.method, request.path, response.status, 1e3 * time_s)


def json_error(status: int, message: str) -> web.Response:
    """Return ``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status)


def load_assets() -> Dict[str, bytes]:
    """Read the page and its assets from the package (a few kB, kept in memory)."""
    root = resources.files("person_search.web") / "static"
    return {name: (root / name).read_bytes() for name in ["index.html", *STATIC]}


@web.middleware
async def errors(request, handler):
    """Turn every failure into a JSON error with its status code."""
    from person_search.web.bridge import GraphError
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, reason)
    except RequestError as exc:
        return json_error(400, str(exc))
    except GraphError as exc:
        return json_error(exc.status, str(exc))
    except ValueError as exc:  # the graph refused the request (its message says why)
        text = str(exc)
        return json_error(503 if ("not active" in text or "not available" in text or "did not answer" in text)
                          else 400, text)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a bug: logged here, a short message to the client
        log.exception("error while serving %s", request.path)
        return json_error(500, "internal error (see the console's log)")


@web.middleware
async def guard(request, handler):
    """Check the token (or, without one, that the Host is loopback) and add the security headers."""
    token = request.app[TOKEN]
    if token:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.cookies.get(COOKIE)
        from_query = request.path == "/" and "token" in request.query
        if from_query:
            given = request.query.get("token")
        if not token_matches(given, token):
            return _headers(json_error(401, "a valid token is needed: open /?token=TOKEN once, or send "
                                            "'Authorization: Bearer TOKEN'"))
        if from_query:  # trade the token in the URL for a cookie, and drop it from the address bar
            rest = [(k, v) for k, v in request.query.items() if k != "token"]
            resp = web.HTTPFound("/" + ("?" + urlencode(rest) if rest else ""))
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise resp
    elif request.host not in loopback_hosts(request.app[PORT]):
        # a loopback console answers only to loopback names (DNS rebinding)
        return _headers(json_error(403, "this console only answers to 127.0.0.1 / localhost"))
    resp = await handler(request)
    return _headers(resp)


def _headers(resp):
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


async def page(request):
    return web.Response(body=request.app[ASSETS]["index.html"], content_type="text/html", charset="utf-8")


async def static(request):
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(text="no such asset")
    resp = web.Response(body=request.app[ASSETS][name], content_type=STATIC[name])
    resp.headers["Cache-Control"] = "no-cache"
    return resp


async def info(request):
    from person_search.web.params import MAX_QUERY_CHARS, MAX_TOP_K
    return web.json_response(dict(request.app[BRIDGE].info(), max_query_chars=MAX_QUERY_CHARS, max_top_k=MAX_TOP_K))


async def search(request):
    t0 = time.perf_counter()
    p = parse_search(request.query)
    message, rows, service_ms = await request.app[BRIDGE].search(p)
    return web.json_response({"query": p.q, "message": message, "count": len(rows), "matches": rows,
                              "service_ms": round(service_ms, 2),
                              "elapsed_ms": round(1e3 * (time.perf_counter() - t0), 2)})


async def similar(request):
    camera = check_camera(request.query.get("camera"))
    track_id = parse_track_id(request.query.get("track_id", ""))
    message, rows = await request.app[BRIDGE].similar(camera, track_id, parse_top_k(request.query))
    return web.json_response({"message": message, "count": len(rows), "matches": rows})


async def track(request):
    camera = check_camera(request.match_info["camera"])
    track_id = parse_track_id(request.match_info["track_id"])
    found = request.app[BRIDGE].track(camera, track_id)
    if found is None:
        raise web.HTTPNotFound(text=f"track {camera}/{track_id} is in no recent answer and was not seen by "
                                    "this console")
    return web.json_response(found)


def _image(store_attr: str):
    async def handler(request):
        key = request.match_info["id"]
        data = getattr(request.app[BRIDGE], store_attr).get(key) if ID_RE.match(key) else None
        if data is None:
            raise web.HTTPNotFound(text="no such image (they are kept for a while after an answer)")
        resp = web.Response(body=data, content_type="image/jpeg")
        resp.headers["Cache-Control"] = "private, max-age=3600, immutable"
        return resp
    return handler


async def cameras(request):
    return web.json_response({"cameras": request.app[BRIDGE].cameras()})


async def latest(request):
    name = check_camera(request.match_info["name"])
    feed = request.app[BRIDGE].feeds.get(name)
    if feed is None:
        raise web.HTTPNotFound(text=f"no camera {name!r} (no overlay topic seen for it)")
    after = request.query.get("after", "0")
    if not re.fullmatch(r"\d{1,18}", after):
        raise RequestError("after must be a frame number")
    if feed.seq and feed.seq <= int(after):
        return web.Response(status=204, headers={"X-Frame-Seq": str(feed.seq)})
    loop = asyncio.get_running_loop()
    seq, data = await loop.run_in_executor(None, feed.jpeg, request.app[TILE_WIDTH])
    if not data:
        raise web.HTTPServiceUnavailable(text=f"no frame from camera {name} yet")
    return web.Response(body=data, content_type="image/jpeg", headers={"X-Frame-Seq": str(seq)})


async def health(request):
    bridge = request.app[BRIDGE]
    out = bridge.health.snapshot()
    out["query_service_ready"] = bridge.query_client.service_is_ready()
    return web.json_response(out)


def make_app(bridge, *, token: str = "", port: int = 0, tile_width: int = 640) -> web.Application:
    """Build the application over a started :class:`~person_search.web.bridge.GraphBridge`."""
    app = web.Application(middlewares=[errors, guard], client_max_size=64 * 1024)
    app[BRIDGE] = bridge
    app[TOKEN] = token
    app[ASSETS] = load_assets()
    app[PORT] = int(port)
    app[TILE_WIDTH] = int(tile_width)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/similar", similar)
    app.router.add_get("/api/tracks/{camera}/{track_id}", track)
    app.router.add_get("/api/images/{id}", _image("answers"))
    app.router.add_get("/api/timeline/{id}", _image("timeline_images"))
    app.router.add_get("/api/cameras", cameras)
    app.router.add_get("/api/cameras/{name}/latest.jpg", latest)
    app.router.add_get("/api/health", health)
    return app
