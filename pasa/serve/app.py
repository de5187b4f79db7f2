"""The web app of ``pasa serve``: the JSON API over a :class:`~pasa.serve.jobs.SearchQueue` and the page.

API (every error is ``{"error": "<one line>"}``):

- ``GET  /api/health``                        200 ``{"status": "ok", ...}`` (the models are loaded before it answers)
- ``POST /api/search``                        ``{"query", "end_date"?, "seed_papers"?}`` -> 202 ``{"id", "status"}``;
                                              400 bad input, 429 queue full
- ``GET  /api/search/{id}``                   status, stage counts, ranked papers; 404 unknown id
- ``GET  /api/search/{id}/events``            Server-Sent Events: ``progress`` while it runs, one final ``status``
- ``GET  /api/search/{id}/export?format=``    ``json`` (the released tree), ``bib`` (selected papers), ``csv``
- ``GET  /api/searches``                      recent searches with their counts

With an API key, every ``/api/`` call needs ``Authorization: Bearer <key>`` (401 otherwise). The page (``/``,
``/?id=<id>``) and its files (``/static/``) come from the package; it asks for the key when a call gets 401.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from pasa.serve.jobs import BadRequestError, QueueFullError, Search, SearchQueue, parse_search_request
from pasa.serve.results import paper_counts, to_bibtex, to_csv

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a search request is a query of at most 2,000 characters and a few ids
EVENT_POLL_S = 0.2  # how often an event stream looks for a change of its search
SHUTDOWN_WAIT_S = 5.0  # a search still running then is queued again at the next start (its record says running)
EXPORT_FORMATS = {
    "json": "application/json",
    "bib": "application/x-bibtex; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}
STATIC_DIR = resources.files("pasa.serve") / "static"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def search_view(search: Search) -> dict[str, Any]:
    """The API's view of one search (``GET /api/search/{id}``)."""
    out = {
        "id": search.id,
        "query": search.query,
        "end_date": search.end_date,
        "seed_papers": search.seed_papers,
        "status": search.status,
        "degraded": search.degraded,
        "failures": search.failures,
        "progress": search.progress,
        "papers": search.papers or [],
        "created": search.created,
        "started": search.started,
        "finished": search.finished,
        "elapsed_s": _elapsed(search),
    }
    if search.error:
        out["error"] = search.error
    return out


def summary_view(search: Search) -> dict[str, Any]:
    """A search as ``GET /api/searches`` lists it: its counts, not its papers."""
    out = {
        "id": search.id,
        "query": search.query,
        "status": search.status,
        "degraded": search.degraded,
        "created": search.created,
        "counts": paper_counts(search.papers or []),
    }
    if search.error:
        out["error"] = search.error
    return out


def _elapsed(search: Search) -> float | None:
    if search.started is None:
        return None
    return round((search.finished or time.time()) - search.started, 1)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return error_response(400, f"{where or 'request'}: {first.get('msg', 'invalid value')}")


async def require_api_key(request: Request, call_next):
    """With an API key set, every ``/api/`` call must carry it as a bearer token (401 otherwise)."""
    api_key = request.app.state.api_key
    if api_key and request.url.path.startswith("/api/"):
        header = request.headers.get("authorization", "")
        token = header[len("bearer ") :] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            return error_response(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"}
            )
    response = await call_next(request)
    if not request.url.path.startswith("/api/"):  # the page's files: revalidate, so an upgrade shows at once
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


router = APIRouter()


def _queue(request: Request) -> SearchQueue:
    return request.app.state.searches


def _find(request: Request, search_id: str) -> Search:
    search = _queue(request).get(search_id)
    if search is None:
        raise HTTPException(404, f"no search with id {search_id!r}")
    return search


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")


@router.get("/api/health")
async def health(request: Request):
    searches = _queue(request)
    return {"status": "ok", **request.app.state.info, "searches": searches.counts(), **searches.limits()}


@router.post("/api/search", status_code=202)
async def submit(request: Request):
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return error_response(400, f"the body is over {MAX_BODY_BYTES // 1024} KiB; a search request is smaller")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error_response(400, 'the body is not JSON; send e.g. {"query": "papers about ..."}')
    try:
        search = _queue(request).submit(parse_search_request(body))
    except BadRequestError as err:
        return error_response(400, str(err))
    except QueueFullError as err:
        return error_response(429, str(err), {"Retry-After": "30"})
    return JSONResponse({"id": search.id, "status": "queued"}, status_code=202)  # a worker may have it already


@router.get("/api/search/{search_id}")
async def show(search_id: str, request: Request):
    return search_view(_find(request, search_id))


@router.get("/api/search/{search_id}/events")
async def events(search_id: str, request: Request):
    search = _find(request, search_id)

    async def stream():
        seen = -1
        while not await request.is_disconnected():
            if search.version != seen:
                seen = search.version
                if search.status in ("done", "failed"):
                    final = {k: v for k, v in search_view(search).items() if k != "papers"}
                    yield {"event": "status", "data": json.dumps(final)}
                    return
                update = {
                    "id": search.id,
                    "status": search.status,
                    "progress": search.progress,
                    "elapsed_s": _elapsed(search),
                }
                yield {"event": "progress", "data": json.dumps(update)}
            await asyncio.sleep(EVENT_POLL_S)

    return EventSourceResponse(stream())


@router.get("/api/search/{search_id}/export")
async def export(search_id: str, request: Request, format: str = "json"):
    search = _find(request, search_id)
    if format not in EXPORT_FORMATS:
        return error_response(400, f"format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    if search.status != "done":
        return error_response(409, f"search {search.id} is {search.status}; export it once it is done")
    disposition = {"Content-Disposition": f'attachment; filename="pasa-{search.id}.{format}"'}
    if format == "json":
        path = _queue(request).tree_path(search.id)
        return FileResponse(path, media_type=EXPORT_FORMATS["json"], headers=disposition)
    text = to_bibtex(search.papers or []) if format == "bib" else to_csv(search.papers or [])
    return Response(text, media_type=EXPORT_FORMATS[format], headers=disposition)


@router.get("/api/searches")
async def recent(request: Request, limit: int = 50):
    if not 1 <= limit <= 1000:
        return error_response(400, f"limit must be between 1 and 1000, not {limit}")
    return {"searches": [summary_view(s) for s in _queue(request).recent(limit)]}


def create_app(searches: SearchQueue, api_key: str | None = None, info: dict[str, Any] | None = None) -> FastAPI:
    """The app over ``searches`` (started and closed with the app). ``info`` is added to ``/api/health``
    (models, demo)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        searches.start()
        yield
        await asyncio.to_thread(searches.close, SHUTDOWN_WAIT_S)

    app = FastAPI(title="PaSa", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.searches, app.state.api_key, app.state.info = searches, api_key, dict(info or {})
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.middleware("http")(require_api_key)
    app.include_router(router)
    return app
