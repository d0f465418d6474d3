"""The dashboard as an ASGI application (Starlette): pages, the JSON API, charts, metrics.

``create_app`` returns it; it mounts under any path (the ASGI ``root_path``: Starlette's or
FastAPI's ``Mount``, ``uvicorn --root-path``, a Django ASGI dispatcher) and builds every link
from that path. Store calls block, so each runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from queuebox import __version__, config
from queuebox.backends.base import Adapter, JobState
from queuebox.errors import QueueboxError, StorageUnavailable, ValidationError, redact_text
from queuebox.json_text import load_json
from queuebox.validation import is_queue_name
from queuebox.web import actions, charts, views
from queuebox.web.metrics import render_metrics
from queuebox.web.pages import page_html
from queuebox.web.security import (
    SecurityHeaders,
    csrf_problem,
    new_session_token,
    session_token,
    set_session_cookie,
)

__all__ = ["Authorize", "create_app", "create_metrics_app"]

#: ``authorize(request) -> bool`` (or an awaitable of it): may this request act?
Authorize = Callable[[Request], bool | Awaitable[bool]]

#: How often the pages poll the JSON API, in seconds.
POLL_SECONDS = 3.0
#: Longest filter value and cursor accepted (anything longer is not one the pages sent).
MAX_FILTER_CHARS = 200
MAX_PAGE = 200
#: Largest request body: actions are small JSON objects.
MAX_BODY = 64 * 1024

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


_CHARTS = {
    "throughput.svg": charts.throughput_svg,
    "failure-rate.svg": charts.failure_rate_svg,
}


class BadRequest(Exception):
    """A query or body the API cannot use; the message says what was wrong."""


class _Dashboard:
    """The state the routes share: the store (or the configured one), and the policy."""

    def __init__(self, adapter: Adapter | None, read_only: bool, authorize: Authorize | None):
        self.adapter = adapter
        self.read_only = read_only
        self.authorize = authorize

    @property
    def store(self) -> Adapter:
        return self.adapter if self.adapter is not None else config.get_adapter()

    def store_label(self) -> str:
        if self.adapter is None:
            return config.describe_store()
        if type(self.adapter).__repr__ is object.__repr__:  # an address says nothing
            return type(self.adapter).__name__
        return redact_text(repr(self.adapter))

    async def may_act(self, request: Request) -> bool:
        if self.read_only:
            return False
        if self.authorize is None:
            return True
        allowed = self.authorize(request)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(store, ...)`` in a worker thread."""
        return await run_in_threadpool(lambda: function(self.store, *args, **kwargs))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "") or "").rstrip("/")


def _text_param(request: Request, key: str) -> str | None:
    value = request.query_params.get(key)
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_CHARS:
        raise BadRequest(f"{key} is {len(value)} characters long: at most {MAX_FILTER_CHARS}")
    return value


def _filters(source: dict[str, Any]) -> views.JobFilter:
    def text(key: str) -> str | None:
        value = source.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > MAX_FILTER_CHARS:
            raise BadRequest(f"filter {key} must be text of at most {MAX_FILTER_CHARS} characters")
        return value

    queue, state = text("queue"), text("state")
    if queue is not None and not is_queue_name(queue):
        raise BadRequest(f"queue {queue!r} is not a queue name")
    try:
        job_state = None if state is None else JobState(state)
    except ValueError:
        choices = ", ".join(s.value for s in JobState)
        raise BadRequest(f"state {state!r} is not a job state: use one of {choices}") from None
    return views.JobFilter(queue=queue, state=job_state, name=text("name"), text=text("text"))


def _limit(request: Request, default: int = 50) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit={raw!r} is not valid: a whole number from 1 to {MAX_PAGE}")
    return int(raw)


async def _json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes: actions are small")
    try:
        data = load_json(body or b"{}")
    except ValueError:
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


class _Endpoints:
    """The routes' handlers, sharing one ``_Dashboard``."""

    def __init__(self, board: _Dashboard) -> None:
        self.board = board

    # -- pages and reads ----------------------------------------------------------------

    def page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            token = session_token(request)
            fresh = token is None
            token = token or new_session_token()
            response = HTMLResponse(
                page_html(
                    name,
                    base=_base(request),
                    csrf_token=token,
                    store=self.board.store_label(),
                    read_only=self.board.read_only,
                    job_id=request.path_params.get("job_id"),
                    static_version=__version__,
                )
            )
            if fresh:
                set_session_cookie(response, request, token)
            return response

        return endpoint

    async def meta(self, request: Request) -> Response:
        board = self.board
        data = {
            "store": board.store_label(),
            "version": __version__,
            "read_only": board.read_only,
            "can_act": await board.may_act(request),
            "poll_seconds": POLL_SECONDS,
            "bulk_limit": actions.BULK_LIMIT,
            **views.features(board.store),
        }
        return JSONResponse(data)

    async def overview(self, request: Request) -> Response:
        return JSONResponse(await self.board.call(views.overview))

    async def jobs(self, request: Request) -> Response:
        filters = _filters(dict(request.query_params))
        cursor = _text_param(request, "cursor")
        limit = _limit(request)
        data = await self.board.call(views.jobs_page, filters, limit=limit, cursor=cursor)
        return JSONResponse(data)

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        data = await self.board.call(views.job_page, job_id)
        if data is None:
            # The id route takes any path, so a GET of an action's URL lands here: say that
            # actions are POSTs (a GET never acts) rather than that no such job exists.
            if job_id.rpartition("/")[2] in actions.JOB_ACTIONS:
                return JSONResponse({"error": "actions are POST requests"}, 405, {"Allow": "POST"})
            return JSONResponse({"error": "no such job (deleted, or succeeded and not kept)"}, 404)
        return JSONResponse(data)

    async def workers(self, request: Request) -> Response:
        return JSONResponse(await self.board.call(views.workers_page))

    async def recurring(self, request: Request) -> Response:
        return JSONResponse(await self.board.call(views.recurring_page))

    async def chart(self, request: Request) -> Response:
        queue = _text_param(request, "queue")
        if queue is not None and not is_queue_name(queue):
            raise BadRequest(f"queue {queue!r} is not a queue name")
        minutes = await self.board.call(views.last_hour, queue)
        if minutes is None:
            return Response(views.Notes.HISTORY, status_code=404, media_type="text/plain")
        draw = _CHARTS[request.url.path.rsplit("/", 1)[-1]]
        return Response(draw(minutes), media_type="image/svg+xml")

    async def metrics(self, request: Request) -> Response:
        body = await self.board.call(render_metrics)
        return Response(body, media_type=PROMETHEUS_TEXT)

    # -- actions --------------------------------------------------------------------------

    async def _refusal(self, request: Request) -> Response | None:
        """The answer to an action that may not go ahead, or ``None``."""
        if self.board.read_only:
            return JSONResponse({"error": "this dashboard is read-only"}, 403)
        problem = csrf_problem(request)
        if problem is not None:
            return JSONResponse({"error": f"refused: {problem}"}, 403)
        if not await self.board.may_act(request):
            return JSONResponse({"error": "you are not allowed to act on jobs here"}, 403)
        return None

    async def job_action(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        action, job_id = request.path_params["action"], request.path_params["job_id"]
        return JSONResponse(await self.board.call(actions.job_action, action, job_id))

    async def queue_action(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        action, queue = request.path_params["action"], request.path_params["queue"]
        return JSONResponse(await self.board.call(actions.queue_action, action, queue))

    async def bulk_jobs(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        body = await _json_body(request)
        dry_run = body.get("dry_run") is True
        if not dry_run and body.get("confirm") is not True:
            raise BadRequest('a bulk action needs "confirm": true (or "dry_run": true to count)')
        filters = body.get("filters") or {}
        if not isinstance(filters, dict):
            raise BadRequest("filters must be a JSON object")
        limit = body.get("limit", actions.BULK_LIMIT)
        if type(limit) is not int:
            raise BadRequest(f"limit must be a whole number from 1 to {actions.BULK_LIMIT}")
        data = await self.board.call(
            actions.bulk_jobs,
            str(body.get("action")),
            _filters(filters),
            limit=limit,
            dry_run=dry_run,
        )
        return JSONResponse(data)

    async def bulk_queues(self, request: Request) -> Response:
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        body = await _json_body(request)
        if body.get("confirm") is not True:
            raise BadRequest('a bulk action needs "confirm": true')
        queues = body.get("queues")
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
            raise BadRequest("queues must be a list of queue names")
        data = await self.board.call(actions.bulk_queues, str(body.get("action")), queues)
        return JSONResponse(data)


def _routes(board: _Dashboard) -> list[BaseRoute]:
    e = _Endpoints(board)
    static = StaticFiles(packages=[("queuebox.web", "static")])
    return [
        Route("/", e.page("overview")),
        Route("/jobs", e.page("jobs")),
        # Job ids may hold "/" (Redis ids are "queue/number"), and a client's
        # %2F arrives decoded: the path convertor takes the rest (actions are matched first
        # by the POST routes' last segment).
        Route("/jobs/{job_id:path}", e.page("job")),
        Route("/workers", e.page("workers")),
        Route("/recurring", e.page("recurring")),
        Route("/api/meta", e.meta),
        Route("/api/overview", e.overview),
        Route("/api/jobs", e.jobs),
        Route("/api/jobs/{job_id:path}/{action}", e.job_action, methods=["POST"]),
        Route("/api/jobs/{job_id:path}", e.job),
        Route("/api/queues/{queue}/{action}", e.queue_action, methods=["POST"]),
        Route("/api/bulk/jobs", e.bulk_jobs, methods=["POST"]),
        Route("/api/bulk/queues", e.bulk_queues, methods=["POST"]),
        Route("/api/workers", e.workers),
        Route("/api/recurring", e.recurring),
        *(Route(f"/charts/{name}", e.chart) for name in _CHARTS),
        Route("/metrics", e.metrics),
        Mount("/static", app=_CachedStatic(static)),
    ]


class _CachedStatic:
    """The static files may be cached for an hour: their URLs carry queuebox's version."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"cache-control", b"max-age=3600")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_cached)


def _errors() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, 400)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, actions.ActionRefused)
        return JSONResponse({"error": str(exc)}, exc.status)

    async def store_error(request: Request, exc: Exception) -> Response:
        status = 503 if isinstance(exc, StorageUnavailable) else 500
        if isinstance(exc, ValidationError):
            status = 400
        return JSONResponse({"error": redact_text(str(exc))}, status)

    return {
        BadRequest: bad_request,
        ValueError: bad_request,
        actions.ActionRefused: refused,
        QueueboxError: store_error,
    }


def create_app(
    adapter: Adapter | None = None,
    *,
    read_only: bool = False,
    authorize: Authorize | None = None,
) -> Starlette:
    """The dashboard, its JSON API (``/api/...``) and ``/metrics`` as one ASGI app.

    ``adapter=None`` reads the configured store (``queuebox.config.get_adapter()``) at each
    request. ``read_only`` refuses every action. ``authorize(request) -> bool`` (sync or
    async) decides who may act when the app is mounted in a host application whose own
    authentication guards it; without it, whoever can reach the app may act.
    """
    board = _Dashboard(adapter, read_only, authorize)
    app = Starlette(routes=_routes(board), exception_handlers=_errors())
    app.add_middleware(SecurityHeaders)
    return app


def create_metrics_app(adapter: Adapter | None = None) -> Starlette:
    """Only ``/metrics`` (``queuebox web --metrics-only``, a sidecar for Prometheus)."""
    board = _Dashboard(adapter, True, None)
    app = Starlette(
        routes=[Route("/metrics", _Endpoints(board).metrics)],
        exception_handlers=_errors(),
    )
    app.add_middleware(SecurityHeaders)
    return app
