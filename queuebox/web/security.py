"""What keeps the dashboard safe: strict response headers, CSRF checks on every action,
and HTTP basic authentication for ``queuebox web --auth``.

CSRF: the first page a browser loads sets a random session cookie (HttpOnly, SameSite=Strict)
and embeds the same value in the page as the CSRF token; every action is a JSON POST that
must carry that token in ``X-CSRF-Token`` matching the cookie, and an ``Origin`` (or, without
one, a ``Referer``) of the dashboard's own host. Another site can neither read the token nor
send the header, and a form post fails the content type, the token and the origin checks.
Because the token is the cookie's value and no server secret, it works the same when the host
application runs several processes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "BasicAuth",
    "LoopbackHostsOnly",
    "SecurityHeaders",
    "csrf_problem",
    "parse_credentials",
    "session_token",
    "set_session_cookie",
]

SESSION_COOKIE = "queuebox_session"
CSRF_HEADER = "x-csrf-token"

#: Only the dashboard's own files: no inline script or style, no other origin, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the strict headers on every response; pages and JSON are never
    cached (they show live data, and may be private)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def session_token(request: Request) -> str | None:
    """The session's CSRF token (the cookie's value), or ``None`` before the first page."""
    value = request.cookies.get(SESSION_COOKIE)
    if value is None or not 20 <= len(value) <= 100 or not value.isascii():
        return None
    return value


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    root = request.scope.get("root_path", "") or ""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path=root.rstrip("/") + "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _own_origin(request: Request) -> str | None:
    host = request.headers.get("host")
    return host.lower() if host else None


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


def _origin_problem(request: Request) -> str | None:
    own = _own_origin(request)
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin is not None:
        if origin == "null" or _netloc(origin) != own:
            return f"the request comes from another origin ({origin})"
    elif referer is None:
        return "the request says neither its Origin nor its Referer"
    elif _netloc(referer) != own:
        return "the request comes from another page (Referer of another host)"
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        return "the request comes from another site (Sec-Fetch-Site)"
    return None


def csrf_problem(request: Request) -> str | None:
    """Why this POST is refused as a possible cross-site request, or ``None`` if it is not."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return "actions are JSON posts (Content-Type: application/json)"
    problem = _origin_problem(request)
    if problem is not None:
        return problem
    expected = session_token(request)
    if expected is None:
        return "no dashboard session: load a dashboard page first"
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return "the CSRF token is missing or does not match this session: reload the page"
    return None


def parse_credentials(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` as given to ``--auth`` / ``QUEUEBOX_WEB_AUTH``; ``ValueError`` saying
    what is expected (never repeating the password)."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ValueError(
            "--auth / QUEUEBOX_WEB_AUTH must be USER:PASSWORD, both non-empty (the user name "
            "cannot hold ':')"
        )
    return user, password


class BasicAuth:
    """ASGI middleware: HTTP basic authentication for every request, with one user and
    password (``queuebox web --auth``). Compared in constant time."""

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self._expected = f"{user}:{password}".encode()

    def _allowed(self, headers: Headers) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(Headers(scope=scope)):
            response = PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="queuebox", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def request_host(headers: Headers) -> str:
    """The host name a request was addressed to (``Host`` without its port), lower case."""
    host = headers.get("host", "").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackHostsOnly:
    """ASGI middleware for a dashboard bound to a loopback address: answer only requests
    addressed to a loopback name or address, so that a web page whose host name was made to
    point at 127.0.0.1 (DNS rebinding) cannot read the pages or act."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_loopback_name(request_host(Headers(scope=scope))):
            response = PlainTextResponse(
                "this dashboard answers only requests addressed to localhost or 127.0.0.1",
                status_code=421,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
