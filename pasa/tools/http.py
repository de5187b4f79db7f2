"""The one HTTP layer every connector uses (DESIGN §2, STYLE rule 2).

``HttpClient`` wraps a ``requests`` session with:

* an on-disk response cache (requests-cache, SQLite, ``~/.cache/pasa/http_cache.sqlite`` by default; directory from
  ``$PASA_CACHE_DIR``; ``PASA_NO_CACHE=1`` or ``HttpConfig(no_cache=True)`` turns it off). Keys are the request's
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

``HttpConfig`` holds every setting (service addresses, timeouts, retries, cache, the LLM timeout); its defaults
read the ``PASA_*`` environment, and ``pasa run`` parses it as it is.

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
from dataclasses import dataclass, field, replace
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


def env_number(name: str, default: float, cast: Callable[[str], Any] = float) -> Callable[[], Any]:
    """A ``default_factory``: ``$name`` as a number when set, else ``default``; a value that is not a number raises
    ``ValueError`` naming the variable."""

    def read() -> Any:
        value = os.environ.get(name, "").strip()
        if not value:
            return default
        try:
            return cast(float(value))
        except ValueError as err:
            raise ValueError(f"{name}={value!r} is not a number") from err

    return read


def env_url(name: str, module: str, constant: str) -> Callable[[], str]:
    """A ``default_factory``: ``$name`` when set, else the connector module's URL constant."""

    def read() -> str:
        import importlib

        return os.environ.get(name, "").strip() or getattr(importlib.import_module(module), constant)

    return read


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass
class HttpConfig:
    """Service addresses, timeouts, retries and cache of the HTTP layer (``pasa run``'s flags, ``HttpClient``'s
    settings). Each default reads its ``PASA_*`` environment variable, once, when the object is made."""

    serper_url: str = field(
        default_factory=env_url("PASA_SERPER_URL", "pasa.tools.serper", "SERPER_URL"),
        metadata={"help": "Serper search endpoint (env PASA_SERPER_URL)."},
    )
    arxiv_url: str = field(
        default_factory=env_url("PASA_ARXIV_URL", "pasa.tools.arxiv_api", "ARXIV_API_URL"),
        metadata={"help": "arXiv Atom API endpoint (env PASA_ARXIV_URL)."},
    )
    ar5iv_url: str = field(
        default_factory=env_url("PASA_AR5IV_URL", "pasa.tools.ar5iv", "AR5IV_URL"),
        metadata={"help": "ar5iv page URL with {arxiv_id}, or a base URL the id is appended to (env PASA_AR5IV_URL)."},
    )
    arxiv_html_url: str | None = field(
        default_factory=lambda: os.environ.get("PASA_ARXIV_HTML_URL", "").strip() or None,
        metadata={
            "help": "arXiv's own HTML pages ({arxiv_id} template or base URL), asked when ar5iv has no page (env "
            "PASA_ARXIV_HTML_URL; default arxiv.org/html when --ar5iv_url is ar5iv's, else none)."
        },
    )
    no_cache: bool = field(
        default=False, metadata={"help": f"Do not use the on-disk HTTP response cache ({NO_CACHE_ENV}=1 also)."}
    )
    cache_dir: str = field(
        default_factory=default_cache_dir,
        metadata={"help": f"HTTP cache folder (env {CACHE_DIR_ENV})."},
    )
    cache_expire_after: float | None = field(
        default=None, metadata={"help": "Seconds a cached answer stays valid; unset = forever (reproducible reruns)."}
    )
    http_connect_timeout: float = field(
        default_factory=env_number("PASA_HTTP_CONNECT_TIMEOUT", 10.0),
        metadata={"help": "Seconds to connect (env PASA_HTTP_CONNECT_TIMEOUT)."},
    )
    http_timeout: float = field(
        default_factory=env_number("PASA_HTTP_TIMEOUT", 30.0),
        metadata={"help": "Read timeout of a service request, in seconds (env PASA_HTTP_TIMEOUT)."},
    )
    http_retries: int = field(
        default_factory=env_number("PASA_HTTP_RETRIES", 4, int),
        metadata={"help": "Retries after the first attempt on 429/5xx/timeouts (env PASA_HTTP_RETRIES)."},
    )
    http_backoff: float = field(
        default_factory=env_number("PASA_HTTP_BACKOFF", 1.0),
        metadata={"help": "First backoff in seconds, doubling each retry (env PASA_HTTP_BACKOFF)."},
    )
    http_backoff_max: float = field(
        default_factory=env_number("PASA_HTTP_BACKOFF_MAX", 30.0),
        metadata={"help": "Longest backoff in seconds (env PASA_HTTP_BACKOFF_MAX)."},
    )
    http_retry_after_max: float = field(
        default_factory=env_number("PASA_HTTP_RETRY_AFTER_MAX", 60.0),
        metadata={
            "help": "Longest Retry-After honoured; a longer one gives up at once (env PASA_HTTP_RETRY_AFTER_MAX)."
        },
    )
    http_max_wait: float = field(
        default_factory=env_number("PASA_HTTP_MAX_WAIT", 90.0),
        metadata={
            "help": "Most seconds one service request may cost, retries and sleeps included; 0 = no cap "
            "(env PASA_HTTP_MAX_WAIT)."
        },
    )
    arxiv_interval: float = field(
        default_factory=env_number("PASA_ARXIV_INTERVAL", 3.0),
        metadata={"help": "Seconds between requests to arXiv/ar5iv hosts, as arXiv asks (env PASA_ARXIV_INTERVAL)."},
    )
    llm_timeout: float = field(
        default_factory=env_number("PASA_LLM_TIMEOUT", 120.0),
        metadata={"help": "Seconds per request to an OpenAI-compatible model server (env PASA_LLM_TIMEOUT)."},
    )
    # Not on the command line: set on the object before building the client (tests do).
    backoff_jitter: float = field(default=1.0, init=False)  # random seconds (0..jitter) added to each backoff
    user_agent: str = field(default=USER_AGENT, init=False)
    pool_size: int = field(default=32, init=False)  # connections per host (tool threads and LLM calls share it)
    default_min_interval: float = field(default=0.0, init=False)  # minimum interval for hosts not listed
    min_interval: dict[str, float] = field(default_factory=dict, init=False)  # host -> seconds, from arxiv_interval

    def __post_init__(self):
        if env_flag(NO_CACHE_ENV):
            self.no_cache = True
        self.cache_dir = os.path.expanduser(self.cache_dir)
        if "{arxiv_id}" not in self.ar5iv_url:
            self.ar5iv_url = self.ar5iv_url.rstrip("/") + "/{arxiv_id}"
        for name in ("http_connect_timeout", "http_timeout", "llm_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("http_retries", "http_backoff", "http_backoff_max", "http_retry_after_max", "http_max_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        pages = (self.arxiv_url, self.ar5iv_url, self.arxiv_html_url or "")
        hosts = {urlsplit(u.replace("{arxiv_id}", "x")).hostname for u in pages if u}
        self.min_interval = {h: self.arxiv_interval for h in set(DEFAULT_MIN_INTERVALS) | hosts if h}

    @property
    def max_wait(self) -> float | None:
        """``http_max_wait`` in seconds, None for no cap."""
        return self.http_max_wait or None

    def http_config(self, **changes: Any) -> HttpConfig:
        """A copy with ``changes`` (field names) applied."""
        return replace(self, **changes)


ServiceArgs = HttpConfig  # the name pasa.tools.sources and its tests use


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
        if not self.config.no_cache:
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
            initial=cfg.http_backoff, max=cfg.http_backoff_max, jitter=cfg.backoff_jitter
        )(retry_state)
        err = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            if retry_after > cfg.http_retry_after_max:
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
        session = self._cached if (cache and self._cached is not None) else self._plain
        call = _Call(self, session, method, url, parse, self._timeouts(timeout), kwargs)
        try:
            result = call.retrying(call.attempt)
        except _RetryableError as err:
            if err.response is not None and not check_status:
                return err.response
            raise call.give_up_error(err) from err
        if check_status and isinstance(result, requests.Response) and result.status_code >= 400:
            raise HTTPStatusError(
                f"{method} {url}: HTTP {result.status_code}: {result.text[:200]!r}",
                url=url,
                status_code=result.status_code,
            )
        return result

    def _timeouts(self, timeout: float | tuple[float, float] | None) -> tuple[float, float]:
        """``(connect, read)`` seconds of a request: the config's, or the caller's read timeout."""
        cfg = self.config
        if timeout is None:
            return (cfg.http_connect_timeout, cfg.http_timeout)
        if isinstance(timeout, tuple):
            return timeout
        return (min(cfg.http_connect_timeout, timeout), timeout)

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


class _Call:
    """One ``fetch``: its attempts, the time they spent on the server, and when to stop retrying."""

    def __init__(self, client: HttpClient, session, method: str, url: str, parse, timeout, kwargs: dict):
        self.client, self.session, self.method, self.url = client, session, method, url
        self.parse, self.timeout, self.kwargs = parse, timeout, kwargs
        self.config = client.config
        self.spent = 0.0  # seconds spent in attempts (sleeps are counted by tenacity's idle_for)
        self.number = 0
        self.retrying = tenacity.Retrying(
            stop=self.stop,
            wait=client._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError),
            sleep=client.sleep,
            reraise=True,
            before_sleep=self.log_retry,
        )

    def budget(self) -> tuple[float, float]:
        """The timeouts of the next attempt: later attempts get what is left of ``max_wait``."""
        max_wait = self.config.max_wait
        if self.number == 1 or max_wait is None:
            return self.timeout
        left = max(0.1, max_wait - self.spent - self.retrying.statistics.get("idle_for", 0.0))
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def attempt(self):
        self.number += 1
        t0, queued0 = time.monotonic(), self.client.queued_seconds()
        try:
            resp = self.client._attempt(self.session, self.method, self.url, self.budget(), self.kwargs)
            if self.parse is None or resp.status_code >= 400:
                return resp
            try:
                return self.parse(resp)
            except PaperNotFoundError:
                raise
            except Exception as err:  # any parse failure: the answer is bad, never keep it
                self.client._evict(resp)
                raise _RetryableError(f"bad answer: {type(err).__name__}: {err}", bad_answer=True) from err
        finally:  # the time waiting for our own rate-limit slot is not spent on the server
            self.spent += max(0.0, time.monotonic() - t0 - (self.client.queued_seconds() - queued0))

    def stop(self, rs: tenacity.RetryCallState) -> bool:
        cfg = self.config
        if rs.attempt_number > cfg.http_retries or rs.upcoming_sleep == float("inf"):
            return True
        return cfg.max_wait is not None and self.spent + rs.idle_for + rs.upcoming_sleep >= cfg.max_wait

    def log_retry(self, rs: tenacity.RetryCallState) -> None:
        logger.info(
            "%s %s failed (%s); retry %d/%d in %.1fs",
            self.method,
            redact(self.url),
            redact(str(rs.outcome.exception())),
            rs.attempt_number,
            self.config.http_retries,
            rs.next_action.sleep if rs.next_action else 0.0,
        )

    def give_up_error(self, err: _RetryableError) -> ServiceError:
        """The typed error of a request that failed its last attempt, saying why it stopped."""
        cfg = self.config
        attempts = self.retrying.statistics.get("attempt_number", 1)
        why = f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}"
        if err.retry_after is not None and err.retry_after > cfg.http_retry_after_max:
            why += f" (the server asks to retry after {err.retry_after:.0f} s, over retry_after_max)"
        elif attempts <= cfg.http_retries:
            why += f" (max_wait {cfg.max_wait:g} s reached)"
        status = err.response.status_code if err.response is not None else None
        if err.bad_answer:
            cls = BadAnswerError
        else:
            cls = HTTPStatusError if status is not None else ServiceError
        return cls(f"{self.method} {self.url}: {why}: {err}", url=self.url, status_code=status)
