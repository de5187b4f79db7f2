"""The one HTTP layer every connector uses (DESIGN §2, STYLE rule 2).

``HttpClient`` wraps a ``requests`` session with:

* an on-disk response cache (requests-cache, SQLite, ``~/.cache/pasa/http_cache.sqlite`` by default; directory from
  ``$PASA_CACHE_DIR``; ``PASA_NO_CACHE=1`` or ``HttpConfig(cache=False)`` turns it off). Keys are the request's
  method, URL and body; secret headers (``X-API-KEY``, ``Authorization``) are neither part of the key nor stored.
  Only HTTP 200 answers are cached, and server ``Cache-Control`` headers are ignored, so a rerun replays the same
  answers (reproducible runs; delete the file or pass ``cache_expire_after`` to refresh);
* retries (tenacity) on 429, 5xx, connection errors, timeouts and truncated bodies, with exponential backoff and
  jitter, honouring ``Retry-After`` (seconds or an HTTP date, capped by ``retry_after_max``);
* a per-host minimum interval between requests that reach the network (cache hits do not wait). arXiv asks for
  one request every 3 s on its API (https://info.arxiv.org/help/api/tou.html), hence the defaults;
* connect and read timeouts on every request.

Errors are typed: ``ServiceError`` (gave up after retries, or a non-retryable HTTP error as ``HTTPStatusError``).
Connectors add ``PaperNotFoundError`` and ``MissingAPIKeyError``; ``pasa.tools.sources`` turns them into a logged
warning and ``None``/``[]``.

Why these libraries: requests-cache gives a keyed, thread-safe SQLite cache with secret redaction in a few lines,
and tenacity gives tested retry/backoff/jitter policies; hand-written versions of both are where bugs hide.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "pasa")
CACHE_DIR_ENV = "PASA_CACHE_DIR"
NO_CACHE_ENV = "PASA_NO_CACHE"
CACHE_FILE = "http_cache.sqlite"
# Seconds between two network requests to a host. arXiv's API terms ask for one request per 3 s; ar5iv and the
# arXiv search/HTML pages share arXiv's servers, so they get the same courtesy by default.
DEFAULT_MIN_INTERVALS = {
    "export.arxiv.org": 3.0,
    "arxiv.org": 3.0,
    "ar5iv.labs.arxiv.org": 3.0,
    "ar5iv.org": 3.0,
}
# Never part of a cache key, never written to the cache file.
SECRET_PARAMS = ("X-API-KEY", "Authorization", "api_key", "apikey")
USER_AGENT = "pasa-reproduction/0.1 (academic paper search agent; python-requests)"


class ServiceError(RuntimeError):
    """A remote service failed: an HTTP error, a timeout or connection error after retries, or a bad payload."""

    def __init__(self, message: str, url: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.url = url
        self.status_code = status_code


class HTTPStatusError(ServiceError):
    """A non-retryable HTTP error status (4xx other than 429), or a retryable one after the last retry."""


class MissingAPIKeyError(ServiceError):
    """A service needs a key from an environment variable that is not set."""


class PaperNotFoundError(LookupError):
    """The service answered, but has no such paper (not a failure: sources return ``None`` quietly)."""


class _RetryableError(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None, response: requests.Response | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.response = response


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """[pure] Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/bad.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def default_cache_dir() -> str:
    """``$PASA_CACHE_DIR`` if set, else ``~/.cache/pasa``."""
    return os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


@dataclass
class HttpConfig:
    """Settings of the shared HTTP layer."""

    cache: bool = field(
        default=True, metadata={"help": f"On-disk response cache (SQLite). {NO_CACHE_ENV}=1 in the env disables it."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": f"Cache directory (default: ${CACHE_DIR_ENV} or {DEFAULT_CACHE_DIR})."}
    )
    cache_expire_after: float | None = field(
        default=None, metadata={"help": "Seconds a cached answer stays valid; None = forever (reproducible reruns)."}
    )
    connect_timeout: float = field(default=10.0, metadata={"help": "Seconds to connect."})
    timeout: float = field(default=60.0, metadata={"help": "Seconds to wait for the server's answer (read timeout)."})
    max_retries: int = field(default=4, metadata={"help": "Retries after the first attempt (429/5xx/timeouts)."})
    backoff_initial: float = field(default=1.0, metadata={"help": "First backoff in seconds (doubles each retry)."})
    backoff_max: float = field(default=60.0, metadata={"help": "Longest backoff in seconds."})
    backoff_jitter: float = field(default=1.0, metadata={"help": "Random seconds (0..jitter) added to each backoff."})
    retry_after_max: float = field(default=120.0, metadata={"help": "Longest Retry-After honoured, in seconds."})
    min_interval: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MIN_INTERVALS),
        metadata={"help": "Host -> minimum seconds between network requests (arXiv asks for 3 s)."},
    )
    default_min_interval: float = field(default=0.0, metadata={"help": "Minimum interval for other hosts."})
    user_agent: str = field(default=USER_AGENT, metadata={"help": "User-Agent header."})

    def __post_init__(self):
        if os.environ.get(NO_CACHE_ENV, "").strip().lower() in ("1", "true", "yes"):
            self.cache = False
        if self.cache_dir is None:
            self.cache_dir = default_cache_dir()


class RateLimiter:
    """Per-host minimum interval between requests; thread-safe (each caller reserves the next free slot)."""

    def __init__(
        self,
        min_interval: dict[str, float],
        default: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.min_interval = dict(min_interval)
        self.default = default
        self.clock = clock
        self.sleep = sleep
        self._next_free: dict[str, float] = {}
        self._lock = threading.Lock()

    def interval(self, host: str) -> float:
        return self.min_interval.get(host, self.default)

    def wait(self, host: str) -> float:
        """Block until ``host`` may be called again; returns the seconds waited."""
        interval = self.interval(host)
        if interval <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            start = max(now, self._next_free.get(host, now))
            self._next_free[host] = start + interval
        delay = start - now
        if delay > 0:
            logger.debug("rate limit: waiting %.2fs for %s", delay, host)
            self.sleep(delay)
        return delay


class _RateLimitedAdapter(HTTPAdapter):
    """Transport adapter that waits for the host's slot; requests-cache calls it only on a cache miss."""

    def __init__(self, limiter: RateLimiter, on_send: Callable[[], None], **kwargs):
        super().__init__(**kwargs)
        self.limiter = limiter
        self.on_send = on_send

    def send(self, request, *args, **kwargs):
        self.limiter.wait(urlsplit(request.url).hostname or "")
        self.on_send()
        return super().send(request, *args, **kwargs)


class HttpClient:
    """The shared HTTP session (cache, retries, rate limits, timeouts). Thread-safe; inject it into connectors.

    Args:
        config: ``HttpConfig``; defaults read the environment (``PASA_CACHE_DIR``, ``PASA_NO_CACHE``).
        sleep: the sleep used between retries and by the rate limiter (tests pass a recorder).
    """

    def __init__(self, config: HttpConfig | None = None, sleep: Callable[[float], None] = time.sleep):
        self.config = config or HttpConfig()
        self.sleep = sleep
        self.limiter = RateLimiter(self.config.min_interval, self.config.default_min_interval, sleep=sleep)
        self.network_requests = 0  # requests that reached the network (cache misses), for logs and tests
        self._count_lock = threading.Lock()
        self._plain = self._mount(requests.Session())
        self._cached = None
        if self.config.cache:
            import requests_cache

            os.makedirs(self.config.cache_dir, exist_ok=True)
            self.cache_path = os.path.join(self.config.cache_dir, CACHE_FILE)
            self._cached = self._mount(
                requests_cache.CachedSession(
                    cache_name=self.cache_path,
                    backend="sqlite",
                    allowable_methods=("GET", "POST"),
                    allowable_codes=(200,),
                    expire_after=-1 if self.config.cache_expire_after is None else self.config.cache_expire_after,
                    cache_control=False,
                    ignored_parameters=list(SECRET_PARAMS),
                    match_headers=False,
                    stale_if_error=False,
                )
            )
            logger.debug("HTTP cache: %s", self.cache_path)
        else:
            self.cache_path = None

    def _count(self) -> None:
        with self._count_lock:
            self.network_requests += 1

    def _mount(self, session: requests.Session) -> requests.Session:
        adapter = _RateLimitedAdapter(self.limiter, self._count)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = self.config.user_agent
        return session

    # -- one attempt ------------------------------------------------------------------------------------------
    def _attempt(self, session: requests.Session, method: str, url: str, timeout, kwargs: dict) -> requests.Response:
        try:
            resp = session.request(method, url, timeout=timeout, **kwargs)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as err:
            # ChunkedEncodingError also covers a body shorter than its Content-Length (a truncated answer)
            raise _RetryableError(f"{type(err).__name__}: {err}") from err
        except requests.RequestException as err:
            raise ServiceError(f"{method} {url}: {type(err).__name__}: {err}", url=url) from err
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _RetryableError(
                f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")), response=resp
            )
        return resp

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        """Exponential backoff with jitter, or the server's ``Retry-After`` when it is longer."""
        cfg = self.config
        backoff = tenacity.wait_exponential_jitter(
            initial=cfg.backoff_initial, max=cfg.backoff_max, jitter=cfg.backoff_jitter
        )(retry_state)
        err = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            return max(backoff if retry_after <= 0 else 0.0, min(retry_after, cfg.retry_after_max))
        return backoff

    # -- public API -------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        cache: bool = True,
        check_status: bool = True,
        timeout: float | tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request with retries. ``kwargs`` go to ``requests`` (``params``, ``json``, ``data``, ``headers``).

        Args:
            cache: use the on-disk cache (when the client has one); LLM calls pass ``False``.
            check_status: raise ``HTTPStatusError`` for an error status; ``False`` returns the response (the last
                one, after retries, for 429/5xx) and leaves the check to the caller.
            timeout: read timeout (or ``(connect, read)``) for this request; default from the config.

        Raises:
            ServiceError: connection errors/timeouts/truncated bodies after the last retry, or a request error.
            HTTPStatusError: an error status (with ``check_status``).
        """
        session = self._cached if (cache and self._cached is not None) else self._plain
        if timeout is None:
            timeout = (self.config.connect_timeout, self.config.timeout)
        elif not isinstance(timeout, tuple):
            timeout = (min(self.config.connect_timeout, timeout), timeout)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda rs: logger.info(
                "%s %s failed (%s); retry %d/%d in %.1fs",
                method,
                url,
                rs.outcome.exception(),
                rs.attempt_number,
                self.config.max_retries,
                rs.next_action.sleep if rs.next_action else 0.0,
            ),
        )
        try:
            resp = retrying(self._attempt, session, method, url, timeout, kwargs)
        except _RetryableError as err:
            attempts = self.config.max_retries + 1
            if err.response is not None and not check_status:
                return err.response
            status = err.response.status_code if err.response is not None else None
            cls = HTTPStatusError if status is not None else ServiceError
            raise cls(
                f"{method} {url}: gave up after {attempts} attempts: {err}", url=url, status_code=status
            ) from err
        if check_status and resp.status_code >= 400:
            raise HTTPStatusError(
                f"{method} {url}: HTTP {resp.status_code}: {resp.text[:200]!r}", url=url, status_code=resp.status_code
            )
        return resp

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._plain.close()
        if self._cached is not None:
            self._cached.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
