"""Who may use the service and the live page: an optional API key, the bind check, CORS.

* **API key.** Clients send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (a browser's
  WebSocket cannot set headers: the live page sends ``"key"`` in its start message instead).
  Keys are compared in constant time (:func:`hmac.compare_digest`).  Without a key every
  client is let in; with one, everything but :data:`OPEN_PATHS` (health checks and the live
  page's static HTML/JS, which hold nothing secret) answers 401 without it.
* **Binding.** :func:`check_bind`: on a loopback address the key is optional; on any other
  address it is required unless authentication is switched off explicitly (``--no-auth``).
* **CORS** is closed unless origins are named (``--cors-origin``); a WebSocket whose
  ``Origin`` is neither the page's own host nor a named origin is refused (browsers do not
  apply CORS to WebSockets, so a foreign page could otherwise stream through a user's browser).
"""
import hmac
import ipaddress
from urllib.parse import urlsplit

from ..errors import EmotionMXError

KEY_ENV = "EMOTION_MX_API_KEY"
WS_MAX_BYTES = 4 * 1024 * 1024           # uvicorn closes a connection whose WebSocket message is larger
OPEN_PATHS = ("/", "/health", "/ready", "/live", "/live/")      # and /live/static/*
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host):
    host = (host or "").strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host, api_key=None, no_auth=False):
    """The key to enforce for a server on ``host`` (None: no authentication); EmotionMXError,
    one line, when a non-loopback bind has neither a key nor an explicit ``--no-auth``."""
    if api_key is not None:
        api_key = str(api_key)
        if no_auth:
            raise EmotionMXError("give --api-key or --no-auth, not both")
        if len(api_key) < 8 or api_key != api_key.strip() or not api_key.isprintable():
            raise EmotionMXError("--api-key must be at least 8 printable characters without surrounding spaces")
        return api_key
    if no_auth or is_loopback(host):
        return None
    raise EmotionMXError(f"refusing to listen on {host} without authentication: pass --api-key KEY (or set "
                         f"{KEY_ENV}), or --no-auth to serve every client that can reach the port")


def key_matches(given, expected):
    """Constant-time comparison; a missing key never matches."""
    if given is None:
        return False
    return hmac.compare_digest(str(given).encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def header_key(headers):
    """The key a request carries in ``Authorization: Bearer`` or ``X-API-Key`` (or None)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key")


def is_open_path(path):
    return path in OPEN_PATHS or path.startswith("/live/static/")


def origin_allowed(headers, allowed_origins):
    """A WebSocket's ``Origin`` is acceptable: absent (not a browser), the page's own host, or
    one of ``allowed_origins`` (``*`` allows all)."""
    origin = headers.get("origin")
    if not origin:
        return True
    if "*" in allowed_origins or origin in allowed_origins:
        return True
    return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()


class APIKeyAuth:
    """ASGI middleware: HTTP requests outside :data:`OPEN_PATHS` need the key (401 in the
    service's JSON format otherwise).  WebSockets are checked by their route, which can also
    read the key from the first message."""

    def __init__(self, app, api_key):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not is_open_path(scope.get("path", "")):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            if not key_matches(header_key(headers), self.api_key):
                from .http import error_response
                resp = error_response(401, "unauthorized", "missing or wrong API key: send the header "
                                      "'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                      headers={"WWW-Authenticate": "Bearer"})
                return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


def install(app, api_key=None, cors_origins=()):
    """Key check and CORS on ``app``; ``app.state.api_key`` / ``cors_origins`` for the WebSocket."""
    app.state.api_key = api_key
    app.state.cors_origins = tuple(cors_origins or ())
    if api_key:
        app.add_middleware(APIKeyAuth, api_key=api_key)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
