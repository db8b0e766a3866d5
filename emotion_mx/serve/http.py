"""The service's JSON error format, applied to everything the framework answers too.

Every error is ``{"error": code, "detail": message[, "argument": name]}``: ours
(:class:`~.engine.ServiceError`, :class:`~emotion_mx.api.InputError`) and the framework's own
(404, 405, 422 request validation, 400 malformed multipart, anything else an ``HTTPException``
carries).  No answer shows an absolute server path (:func:`scrub`), a client that goes away
mid-body ends its request quietly, and JSON bodies are refused above :data:`MAX_JSON_DEPTH`
levels of nesting before they are parsed.  Used by the service (:mod:`.app`) and by the live
page's own app (:mod:`emotion_mx.live.server`).
"""
import json
import logging
import os
import re

import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..api import InputError
from .engine import ServiceError

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32             # our bodies are 3 levels deep; a 400 KB "[[[[..." is refused
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
         429: "overloaded", 503: "not_ready"}
# an absolute path: '/' after a start, a quote, '(' or whitespace, two components or more
_ABS_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"():,;]+){2,}/?")
_WIN_PATH = re.compile(r"\b[A-Za-z]:\\(?:[^\s\\'\"():,;]+\\)*([^\s\\'\"():,;]+)")


class BadRequest(ServiceError):
    """A body the service cannot even parse (nesting, multipart framing): HTTP 400."""
    status, code = 400, "bad_request"


def scrub(value):
    """``value`` (a string, or JSON-like lists/dicts of them) with every absolute path replaced by
    its last component: answers name files, never where the server keeps them."""
    if isinstance(value, str):
        value = _ABS_PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/")), value)
        return _WIN_PATH.sub(lambda m: m.group(1), value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def error_response(status, code, detail, retry_after=None, headers=None, **extra):
    body = {"error": code, "detail": scrub(str(detail))}
    body.update({k: scrub(v) for k, v in extra.items() if v is not None})
    headers = dict(headers or {})
    if retry_after:
        headers["Retry-After"] = str(int(retry_after))
    return JSONResponse(body, status_code=status, headers=headers or None)


class BodyLimit:
    """ASGI middleware: a body larger than ``limit`` bytes gets 413 before it is read (by its
    Content-Length) or as soon as it exceeds the limit (chunked uploads)."""

    def __init__(self, app, limit):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope, receive, send):
        resp = error_response(413, "payload_too_large",
                              f"request body larger than {self.limit} bytes (the service's limit)")
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


def json_depth(raw):
    """Deepest bracket nesting of a JSON text (bytes), brackets inside strings skipped: vectorised,
    no recursion (:func:`parse_json` calls it only for bodies with more brackets than the limit)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    a = np.frombuffer(raw, np.uint8)
    n = len(a)
    quotes = np.flatnonzero(a == 0x22)
    if quotes.size:                       # a quote after an odd run of backslashes is escaped
        pos = np.arange(n, dtype=np.int64)
        last_plain = np.maximum.accumulate(np.where(a != 0x5C, pos, -1))
        before = np.where(quotes > 0, last_plain[np.maximum(quotes - 1, 0)], 0)
        run = np.where(quotes > 0, quotes - 1 - before, 0)
        quotes = quotes[run % 2 == 0]
    toggle = np.zeros(n, np.int8)
    toggle[quotes] = 1
    outside = (np.cumsum(toggle, dtype=np.int32) & 1) == 0
    step = (np.isin(a, (0x5B, 0x7B)) & outside).astype(np.int32) - (np.isin(a, (0x5D, 0x7D)) & outside)
    return int(np.cumsum(step).max()) if n else 0


def parse_json(raw, argument="body"):
    """A request body → JSON value; :class:`BadRequest` (400) when nested deeper than
    :data:`MAX_JSON_DEPTH`, :class:`InputError` (422) when it is not JSON."""
    openers = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else MAX_JSON_DEPTH + 1
    if openers > MAX_JSON_DEPTH and json_depth(raw) > MAX_JSON_DEPTH:      # few brackets: cannot be deeper
        raise BadRequest(f"{argument}: JSON nested deeper than {MAX_JSON_DEPTH} levels", argument=argument)
    try:
        return json.loads(raw)
    except RecursionError:                          # cannot happen below the depth limit; still ours
        raise BadRequest(f"{argument}: JSON nested too deeply", argument=argument) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(argument, f"invalid JSON ({e})") from None


def _validation_argument(loc):
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


def install_error_handlers(app):
    """Every error of ``app`` in the service's format (see the module docstring)."""

    @app.exception_handler(ServiceError)
    async def _service_error(request, e):
        return error_response(e.status, e.code, str(e), e.retry_after, **e.extra)

    @app.exception_handler(InputError)
    async def _input_error(request, e):
        return error_response(422, "invalid_input", str(e), argument=e.argument)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif e.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        elif e.status_code == 400 and "boundary" in detail.lower():
            detail = f"malformed multipart body ({detail.rstrip('.')}); let the client library set the content type"
        code = CODES.get(e.status_code, "http_error")
        return error_response(e.status_code, code, detail, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e):
        errors = e.errors()
        first = errors[0] if errors else {}
        argument = _validation_argument(first.get("loc", ()))
        return error_response(422, "invalid_input", f"{argument}: {first.get('msg', 'invalid request')}",
                              argument=argument)

    @app.exception_handler(Exception)
    async def _bug(request, e):            # a bug: logged with its traceback, the client sees our format
        return error_response(500, "internal_error", "internal error (logged on the server)")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, e):
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=400)          # nobody reads it; no traceback in the log
