"""The one HTTP layer every connector uses (DESIGN §2, STYLE rule 2).

``HttpClient`` wraps a ``requests`` session with:

* an on-disk response cache (requests-cache, SQLite, ``~/.cache/pasa/http_cache.sqlite`` by default; directory from
  ``$PASA_CACHE_DIR``; ``PASA_NO_CACHE=1`` or ``HttpConfig(cache=False)`` turns it off). Keys are the request's
  method, URL and body; secret headers (``X-API-KEY``, ``Authorization``) are neither part of the key nor stored.
  Only HTTP 200 answers that parse are kept, and server ``Cache-Control`` headers are ignored, so a rerun replays
  the same answers (reproducible runs; delete the file or pass ``cache_expire_after`` to refresh);
* retries (tenacity) on 429, 5xx, connection errors, timeouts, truncated bodies and bad answers, with exponential
  backoff and
  jitter, honouring ``Retry-After`` (seconds or an HTTP date, capped by ``retry_after_max``);
* a per-host minimum interval between requests that reach the network (cache hits do not wait). arXiv asks for
  one request every 3 s on its API (https://info.arxiv.org/help/api/tou.html), hence the defaults;
* connect and read timeouts on every request, and a cap on what one request may cost in total (attempts plus
  sleeps, ``max_wait``): a ``Retry-After`` longer than ``retry_after_max`` or the remaining budget gives up at once;
* answer validation: ``fetch(..., parse=fn)`` returns ``fn(response)``; when ``fn`` raises (a garbled 200, an
  empty body, the wrong format) the cached entry is evicted and the request retried, so a bad answer is never
  replayed from the cache. ``PaperNotFoundError`` from ``fn`` is a valid answer and stays cached;
* secret redaction: the values of ``SECRET_ENVS`` (``SERPER_API_KEY``, ``OPENAI_API_KEY``) are replaced by
  ``[REDACTED]`` in every ``ServiceError`` message and URL, every error body (status >= 400) handed back to
  callers, and the log lines of this module, of ``urllib3``/``requests_cache`` and of the root logger's handlers
  (``install_log_redaction``).

``ServiceArgs`` holds the user-facing settings (service addresses, timeouts, retries, the LLM timeout) with
``PASA_*`` environment fallbacks; ``ServiceArgs.http_config()`` turns them into an ``HttpConfig``.

Errors are typed: ``ServiceError`` (gave up after retries), ``HTTPStatusError`` (an error status),
``BadAnswerError`` (a 200 whose body never parsed); connectors add ``PaperNotFoundError`` ("no such paper", not a
failure) and ``MissingAPIKeyError``. Sources (``pasa.tools.sources``) raise failures to their caller, which logs
one warning and counts it (docs/paper_sources.md, Failure policy).

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
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
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
# Environment variables whose values are secrets: redacted from messages, logs and error bodies.
SECRET_ENVS = ["SERPER_API_KEY", "OPENAI_API_KEY"]
REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4  # shorter values are not redacted (they would blank out ordinary words)
T = TypeVar("T")


def secret_values() -> list[str]:
    """The current values of ``SECRET_ENVS`` (read at call time), longest first."""
    values = {os.environ.get(name, "").strip() for name in SECRET_ENVS}
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def redact(text: str) -> str:
    """Replace every configured secret in ``text`` by ``[REDACTED]``.

    >>> os.environ["SERPER_API_KEY"] = "sk-demo-123"
    >>> redact("invalid key sk-demo-123 for https://x?api_key=sk-demo-123")
    'invalid key [REDACTED] for https://x?api_key=[REDACTED]'
    >>> del os.environ["SERPER_API_KEY"]
    """
    if not isinstance(text, str):
        text = str(text)
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that replaces configured secrets in a record's message (``redact``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if secret_values():
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


# Third-party loggers that print request URLs at DEBUG (a key passed as a query parameter would show there).
URL_LOGGERS = ("urllib3.connectionpool", "requests_cache.session", "requests_cache.policy.actions")
_REDACTING_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the URL-printing loggers and to the root logger's handlers (idempotent).

    ``HttpClient`` calls it, so a run that set up logging before building its client redacts every line."""
    for name in URL_LOGGERS:
        log = logging.getLogger(name)
        if _REDACTING_FILTER not in log.filters:
            log.addFilter(_REDACTING_FILTER)
    for handler in logging.getLogger().handlers:
        if _REDACTING_FILTER not in handler.filters:
            handler.addFilter(_REDACTING_FILTER)


class ServiceError(RuntimeError):
    """A remote service failed: an HTTP error, a timeout or connection error after retries, or a bad payload."""

    def __init__(self, message: str, url: str | None = None, status_code: int | None = None):
        super().__init__(redact(message))  # error bodies and URLs may quote a key
        self.url = redact(url) if url is not None else None
        self.status_code = status_code


class HTTPStatusError(ServiceError):
    """A non-retryable HTTP error status (4xx other than 429), or a retryable one after the last retry."""


class BadAnswerError(ServiceError):
    """The service answered 200 with a body that does not parse (garbled, empty, wrong format); never cached."""


class MissingAPIKeyError(ServiceError):
    """A service needs a key from an environment variable that is not set."""


class PaperNotFoundError(LookupError):
    """The service answered, but has no such paper (not a failure: sources return ``None`` quietly)."""


class _RetryableError(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        response: requests.Response | None = None,
        bad_answer: bool = False,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.response = response
        self.bad_answer = bad_answer


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
    timeout: float = field(default=30.0, metadata={"help": "Seconds to wait for the server's answer (read timeout)."})
    max_retries: int = field(default=4, metadata={"help": "Retries after the first attempt (429/5xx/timeouts)."})
    backoff_initial: float = field(default=1.0, metadata={"help": "First backoff in seconds (doubles each retry)."})
    backoff_max: float = field(default=30.0, metadata={"help": "Longest backoff in seconds."})
    backoff_jitter: float = field(default=1.0, metadata={"help": "Random seconds (0..jitter) added to each backoff."})
    retry_after_max: float = field(
        default=60.0,
        metadata={"help": "Longest Retry-After honoured, in seconds; a longer one gives up at once (no sleep)."},
    )
    max_wait: float | None = field(
        default=90.0,
        metadata={
            "help": "Most seconds one request may cost in total (attempts + backoff sleeps); the first attempt always "
            "gets its full timeout. None = no cap."
        },
    )
    min_interval: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MIN_INTERVALS),
        metadata={"help": "Host -> minimum seconds between network requests (arXiv asks for 3 s)."},
    )
    default_min_interval: float = field(default=0.0, metadata={"help": "Minimum interval for other hosts."})
    user_agent: str = field(default=USER_AGENT, metadata={"help": "User-Agent header."})
    pool_size: int = field(
        default=32,
        metadata={"help": "Connections kept per host (the agent's tool threads and the LLM's concurrency share it)."},
    )

    def __post_init__(self):
        if os.environ.get(NO_CACHE_ENV, "").strip().lower() in ("1", "true", "yes"):
            self.cache = False
        if self.cache_dir is None:
            self.cache_dir = default_cache_dir()


def _env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError as err:
        raise ValueError(f"{name}={value!r} is not a number") from err


# ServiceArgs field -> (environment variable, default). URL defaults live in their connector modules.
SERVICE_ENV = {
    "serper_url": ("PASA_SERPER_URL", None),
    "arxiv_url": ("PASA_ARXIV_URL", None),
    "ar5iv_url": ("PASA_AR5IV_URL", None),
    "http_connect_timeout": ("PASA_HTTP_CONNECT_TIMEOUT", 10.0),
    "http_timeout": ("PASA_HTTP_TIMEOUT", 30.0),
    "http_retries": ("PASA_HTTP_RETRIES", 4),
    "http_backoff": ("PASA_HTTP_BACKOFF", 1.0),
    "http_backoff_max": ("PASA_HTTP_BACKOFF_MAX", 30.0),
    "http_retry_after_max": ("PASA_HTTP_RETRY_AFTER_MAX", 60.0),
    "http_max_wait": ("PASA_HTTP_MAX_WAIT", 90.0),
    "arxiv_interval": ("PASA_ARXIV_INTERVAL", 3.0),
    "llm_timeout": ("PASA_LLM_TIMEOUT", 120.0),
}


@dataclass
class ServiceArgs:
    """Service addresses, timeouts and retries of a run (``pasa run``, baselines, PPO); each unset field falls
    back to its ``PASA_*`` environment variable, then to the default. Build the HTTP layer with ``http_config``."""

    serper_url: str | None = field(
        default=None, metadata={"help": "Serper search endpoint (env PASA_SERPER_URL; default serper.dev)."}
    )
    arxiv_url: str | None = field(
        default=None, metadata={"help": "arXiv Atom API endpoint (env PASA_ARXIV_URL; default export.arxiv.org)."}
    )
    ar5iv_url: str | None = field(
        default=None,
        metadata={
            "help": "ar5iv page URL with {arxiv_id}, or a base URL the id is appended to (env PASA_AR5IV_URL; "
            "default ar5iv.labs.arxiv.org/html/{arxiv_id})."
        },
    )
    http_connect_timeout: float | None = field(
        default=None, metadata={"help": "Seconds to connect (env PASA_HTTP_CONNECT_TIMEOUT; default 10)."}
    )
    http_timeout: float | None = field(
        default=None, metadata={"help": "Read timeout of a service request (env PASA_HTTP_TIMEOUT; default 30)."}
    )
    http_retries: int | None = field(
        default=None, metadata={"help": "Retries after the first attempt (env PASA_HTTP_RETRIES; default 4)."}
    )
    http_backoff: float | None = field(
        default=None, metadata={"help": "First backoff in seconds, doubling (env PASA_HTTP_BACKOFF; default 1)."}
    )
    http_backoff_max: float | None = field(
        default=None, metadata={"help": "Longest backoff in seconds (env PASA_HTTP_BACKOFF_MAX; default 30)."}
    )
    http_retry_after_max: float | None = field(
        default=None,
        metadata={
            "help": "Longest Retry-After honoured; a longer one gives up at once (env PASA_HTTP_RETRY_AFTER_MAX; "
            "default 60)."
        },
    )
    http_max_wait: float | None = field(
        default=None,
        metadata={
            "help": "Most seconds one service request may cost, retries and sleeps included; 0 = no cap (env "
            "PASA_HTTP_MAX_WAIT; default 90)."
        },
    )
    arxiv_interval: float | None = field(
        default=None,
        metadata={"help": "Seconds between requests to arXiv/ar5iv hosts (env PASA_ARXIV_INTERVAL; default 3)."},
    )
    llm_timeout: float | None = field(
        default=None, metadata={"help": "Seconds per LLM server request (env PASA_LLM_TIMEOUT; default 120)."}
    )

    def __post_init__(self):
        from pasa.tools import ar5iv, arxiv_api, serper

        urls = {"serper_url": serper.SERPER_URL, "arxiv_url": arxiv_api.ARXIV_API_URL, "ar5iv_url": ar5iv.AR5IV_URL}
        for f in fields(self):
            if getattr(self, f.name) is not None:
                continue
            env, default = SERVICE_ENV[f.name]
            if f.name in urls:
                setattr(self, f.name, os.environ.get(env, "").strip() or urls[f.name])
            else:
                value = _env_float(env, default)
                setattr(self, f.name, int(value) if f.name == "http_retries" else value)
        if "{arxiv_id}" not in self.ar5iv_url:
            self.ar5iv_url = self.ar5iv_url.rstrip("/") + "/{arxiv_id}"
        for name in ("http_connect_timeout", "http_timeout", "llm_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("http_retries", "http_backoff", "http_backoff_max", "http_retry_after_max", "http_max_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")

    def http_config(self, **overrides: Any) -> HttpConfig:
        """The ``HttpConfig`` of these settings (``overrides``: cache, cache_dir, ... of the command line)."""
        hosts = {urlsplit(u.replace("{arxiv_id}", "x")).hostname for u in (self.arxiv_url, self.ar5iv_url)}
        min_interval = {h: self.arxiv_interval for h in set(DEFAULT_MIN_INTERVALS) | hosts if h}
        values = {
            "connect_timeout": self.http_connect_timeout,
            "timeout": self.http_timeout,
            "max_retries": self.http_retries,
            "backoff_initial": self.http_backoff,
            "backoff_max": self.http_backoff_max,
            "retry_after_max": self.http_retry_after_max,
            "max_wait": self.http_max_wait or None,
            "min_interval": min_interval,
        }
        values.update(overrides)
        return HttpConfig(**values)


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

    def __init__(self, limiter: RateLimiter, on_send: Callable[[float], None], **kwargs):
        super().__init__(**kwargs)
        self.limiter = limiter
        self.on_send = on_send

    def send(self, request, *args, **kwargs):
        self.on_send(self.limiter.wait(urlsplit(request.url).hostname or ""))
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
        install_log_redaction()
        self.limiter = RateLimiter(self.config.min_interval, self.config.default_min_interval, sleep=sleep)
        self.network_requests = 0  # requests that reached the network (cache misses), for logs and tests
        self._count_lock = threading.Lock()
        self._queued = threading.local()
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

    def _count(self, queued: float = 0.0) -> None:
        with self._count_lock:
            self.network_requests += 1
        # queueing behind our own per-host rate limit is not the server's fault: ``fetch`` leaves it out of
        # ``max_wait`` (hundreds of queued arXiv lookups at one per 3 s would otherwise all give up)
        self._queued.seconds = self.queued_seconds() + queued

    def queued_seconds(self) -> float:
        """Seconds this thread has waited for rate-limit slots so far."""
        return getattr(self._queued, "seconds", 0.0)

    def _mount(self, session: requests.Session) -> requests.Session:
        adapter = _RateLimitedAdapter(
            self.limiter, self._count, pool_connections=self.config.pool_size, pool_maxsize=self.config.pool_size
        )
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
        if resp.status_code >= 400:  # error bodies may quote the key (a 401/403 "invalid key sk-..."): redact them
            resp._content = redact(resp.text).encode("utf-8")
            resp.encoding = "utf-8"
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _RetryableError(
                f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")), response=resp
            )
        return resp

    def _evict(self, resp: requests.Response) -> None:
        """Drop a response from the cache (its body did not parse)."""
        key = getattr(resp, "cache_key", None)
        if self._cached is not None and key:
            self._cached.cache.delete(key)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        """Exponential backoff with jitter, or the server's ``Retry-After`` when it is longer (``inf`` when it is
        longer than ``retry_after_max``: the stop rule then gives up without sleeping)."""
        cfg = self.config
        backoff = tenacity.wait_exponential_jitter(
            initial=cfg.backoff_initial, max=cfg.backoff_max, jitter=cfg.backoff_jitter
        )(retry_state)
        err = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            if retry_after > cfg.retry_after_max:
                return float("inf")
            return max(backoff if retry_after <= 0 else 0.0, retry_after)
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
        return self.fetch(method, url, None, cache=cache, check_status=check_status, timeout=timeout, **kwargs)

    def fetch(
        self,
        method: str,
        url: str,
        parse: Callable[[requests.Response], T] | None,
        *,
        cache: bool = True,
        check_status: bool = True,
        timeout: float | tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> T:
        """``request`` plus validation: returns ``parse(response)``.

        When ``parse`` raises anything but ``PaperNotFoundError`` (a garbled or empty 200), the answer is evicted
        from the cache and the request retried like a 503; after the last attempt ``BadAnswerError`` is raised.
        A cached bad answer (written before this rule, or by another process) is evicted the same way.
        """
        cfg = self.config
        session = self._cached if (cache and self._cached is not None) else self._plain
        if timeout is None:
            timeout = (cfg.connect_timeout, cfg.timeout)
        elif not isinstance(timeout, tuple):
            timeout = (min(cfg.connect_timeout, timeout), timeout)
        spent = [0.0]  # seconds spent in attempts (sleeps are counted by tenacity's idle_for)
        number = [0]
        safe_url = redact(url)

        def attempt():
            number[0] += 1
            budget = timeout
            if number[0] > 1 and cfg.max_wait is not None:  # later attempts get what is left of the budget
                left = max(0.1, cfg.max_wait - spent[0] - retrying.statistics.get("idle_for", 0.0))
                budget = (min(timeout[0], left), min(timeout[1], left))
            t0, queued0 = time.monotonic(), self.queued_seconds()
            try:
                resp = self._attempt(session, method, url, budget, kwargs)
                if parse is None or resp.status_code >= 400:
                    return resp
                try:
                    return parse(resp)
                except PaperNotFoundError:
                    raise
                except Exception as err:  # any parse failure: the answer is bad, never keep it
                    self._evict(resp)
                    raise _RetryableError(f"bad answer: {type(err).__name__}: {err}", bad_answer=True) from err
            finally:  # the time waiting for our own rate-limit slot is not spent on the server
                spent[0] += max(0.0, time.monotonic() - t0 - (self.queued_seconds() - queued0))

        def stop(rs: tenacity.RetryCallState) -> bool:
            if rs.attempt_number > cfg.max_retries:
                return True
            if rs.upcoming_sleep == float("inf"):
                return True
            return cfg.max_wait is not None and spent[0] + rs.idle_for + rs.upcoming_sleep >= cfg.max_wait

        retrying = tenacity.Retrying(
            stop=stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda rs: logger.info(
                "%s %s failed (%s); retry %d/%d in %.1fs",
                method,
                safe_url,
                redact(str(rs.outcome.exception())),
                rs.attempt_number,
                cfg.max_retries,
                rs.next_action.sleep if rs.next_action else 0.0,
            ),
        )
        try:
            result = retrying(attempt)
        except _RetryableError as err:
            attempts = retrying.statistics.get("attempt_number", 1)
            why = f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}"
            if err.retry_after is not None and err.retry_after > cfg.retry_after_max:
                why += f" (the server asks to retry after {err.retry_after:.0f} s, over retry_after_max)"
            elif attempts <= cfg.max_retries:
                why += f" (max_wait {cfg.max_wait:g} s reached)"
            if err.response is not None and not check_status:
                return err.response
            status = err.response.status_code if err.response is not None else None
            if err.bad_answer:
                cls = BadAnswerError
            else:
                cls = HTTPStatusError if status is not None else ServiceError
            raise cls(f"{method} {url}: {why}: {err}", url=url, status_code=status) from err
        if check_status and isinstance(result, requests.Response) and result.status_code >= 400:
            raise HTTPStatusError(
                f"{method} {url}: HTTP {result.status_code}: {result.text[:200]!r}",
                url=url,
                status_code=result.status_code,
            )
        return result

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def get_parsed(self, url: str, parse: Callable[[requests.Response], T], **kwargs: Any) -> T:
        """``fetch("GET", url, parse)``: the parsed answer; a bad answer is never cached."""
        return self.fetch("GET", url, parse, **kwargs)

    def post_parsed(self, url: str, parse: Callable[[requests.Response], T], **kwargs: Any) -> T:
        """``fetch("POST", url, parse)``: the parsed answer; a bad answer is never cached."""
        return self.fetch("POST", url, parse, **kwargs)

    def close(self) -> None:
        self._plain.close()
        if self._cached is not None:
            self._cached.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
