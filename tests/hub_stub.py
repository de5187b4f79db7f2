"""A loopback stand-in for the Hugging Face Hub's file API (enough of it for ``snapshot_download``).

Serves repos held in memory: ``{(repo_type, repo_id): {path: bytes}}``. Implements what huggingface_hub's
``snapshot_download`` calls: ``GET /api/{models,datasets}/<repo>/revision/<rev>`` (repo info with ``sha``),
``GET /api/{models,datasets}/<repo>/tree/<sha>`` (recursive file listing) and ``HEAD``/``GET``
``[/datasets]/<repo>/resolve/<rev>/<path>`` with ``X-Repo-Commit``/``ETag``/``Content-Length`` and ``Range``.
Every request is recorded in ``server.requests`` so tests can assert what was fetched (and what was not).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"
_API_RE = re.compile(r"^/api/(models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?")
_RESOLVE_RE = re.compile(r"^/(?:(?P<ds>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def _etag(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class HubStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[tuple[str, str], dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # the Authorization header of each request
        self.fail_after_bytes: int | None = None  # cut the first GET of a file after this many bytes (resume tests)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HubStub

    def log_message(self, *args):  # quiet
        pass

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", SHA)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self, what: str):
        body = json.dumps({"error": f"{what} not found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", "RepoNotFound" if what == "repo" else "EntryNotFound")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        path = unquote(urlparse(self.path).path)
        self.server.requests.append((self.command, path))
        self.server.auth.append(self.headers.get("Authorization"))
        m = _API_RE.match(path)
        if m:
            repo_type = "model" if m.group(1) == "models" else "dataset"
            files = self.server.repos.get((repo_type, m.group("repo")))
            if files is None:
                return self._not_found("repo")
            if m.group("kind") == "tree":
                return self._json(
                    [{"type": "file", "path": p, "size": len(d), "oid": _etag(d)} for p, d in sorted(files.items())]
                )
            return self._json({"id": m.group("repo"), "sha": SHA, "siblings": [{"rfilename": p} for p in files]})
        m = _RESOLVE_RE.match(path)
        if m:
            repo_type = "dataset" if m.group("ds") else "model"
            files = self.server.repos.get((repo_type, m.group("repo")))
            if files is None:
                return self._not_found("repo")
            data = files.get(m.group("path"))
            if data is None:
                return self._not_found("entry")
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0] or 0)
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{_etag(data)}"')
            self.send_header("X-Repo-Commit", SHA)
            self.end_headers()
            if self.command == "GET":
                cut = self.server.fail_after_bytes
                if cut is not None and cut < len(body):
                    self.server.fail_after_bytes = None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
            return
        return self._not_found("route")

    do_GET = _handle
    do_HEAD = _handle
