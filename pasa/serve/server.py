"""``pasa serve``: the PaSa agent as a local web app and JSON API; the models load once, searches queue.

Launch lines::

    # no checkpoint, key or network: the demo set-up of `pasa demo` (stand-in crawler, tiny selector, 16 papers)
    pasa serve --demo                                   # then open http://127.0.0.1:7860/
    # the released checkpoints on this machine, results kept in results/serve
    pasa serve --crawler_path checkpoints/pasa-7b-crawler --selector_path checkpoints/pasa-7b-selector
    # models served by vLLM/SGLang, two searches at a time, reachable from other machines (API key required)
    PASA_API_KEY=... pasa serve --host 0.0.0.0 --max_concurrent_searches 2 \\
        --crawler_path http://localhost:8000/v1#pasa-7b-crawler --selector_path http://localhost:8001/v1#pasa-7b-selector

Takes the model, paper source and agent flags of ``pasa run`` (``pasa serve --help``). The API is described in
``pasa/serve/app.py`` and docs/serve.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field

from pasa.agent import AgentConfig
from pasa.checks import (
    CheckError,
    check_int_range,
    check_output_dir,
    check_search_service,
    exit_with,
)
from pasa.runner import (
    RunArgs,
    build_agent,
    build_source,
    check_model_args,
    check_model_servers,
    check_online_args,
    check_source_args,
    setup_logging,
)
from pasa.tools.http import HttpConfig

logger = logging.getLogger(__name__)

PROG = "pasa serve"
API_KEY_ENV = "PASA_API_KEY"
DEFAULT_OUTPUT_DIR = os.path.join("results", "serve")
DEMO_OUTPUT_DIR = os.path.join(tempfile.gettempdir(), "pasa-serve-demo")
LOOPBACK_NAMES = ("localhost",)
SERVE_EXAMPLE = "pasa serve --demo  # then open http://127.0.0.1:7860/"
_HIDDEN = {"help": argparse.SUPPRESS}
GRACEFUL_SHUTDOWN_S = 3  # open event streams are closed after this long when the server stops


@dataclass
class ServeArgs(RunArgs):
    """Arguments of ``pasa serve``: those of ``pasa run`` for the models and the paper source, plus the server's."""

    output_dir: str | None = field(
        default=None,
        metadata={
            "help": f"Searches persist here in the `pasa run` layout, one JSON tree each (default: "
            f"{DEFAULT_OUTPUT_DIR}; with --demo {DEMO_OUTPUT_DIR})."
        },
    )
    demo: bool = field(
        default=False,
        metadata={
            "help": "The set-up of `pasa demo`: a stand-in crawler, a tiny random selector and 16 embedded papers "
            "(no checkpoint, key or network; the scores mean nothing)."
        },
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to listen on; any non-loopback address needs an API key (PASA_API_KEY)."},
    )
    port: int = field(default=7860, metadata={"help": "Port to listen on (0: a free port, printed at start)."})
    api_key: str | None = field(
        default=None,
        metadata={
            "help": f"Bearer token every API call must send (default: env {API_KEY_ENV}; prefer the variable, a flag "
            "shows in the process list)."
        },
    )
    max_concurrent_searches: int = field(
        default=1, metadata={"help": "Searches run at once (1 for a local model; more for vLLM/SGLang servers)."}
    )
    max_queued_searches: int = field(
        default=100, metadata={"help": "Searches waiting at most; a submission beyond gets 429."}
    )
    # `pasa run`'s batch flags: queries come from the page and the API
    query: str | None = field(default=None, metadata=_HIDDEN)
    input_file: str | None = field(default=None, metadata=_HIDDEN)
    end_date: str | None = field(default=None, metadata=_HIDDEN)
    limit: int | None = field(default=None, metadata=_HIDDEN)
    redo_degraded: bool = field(default=False, metadata=_HIDDEN)
    max_consecutive_failures: int | None = field(default=None, metadata=_HIDDEN)
    seed_papers: str | None = field(default=None, metadata=_HIDDEN)  # per search, in the request
    progress: bool | None = field(default=None, metadata=_HIDDEN)


BATCH_ONLY_FLAGS = (
    "query",
    "input_file",
    "end_date",
    "limit",
    "redo_degraded",
    "max_consecutive_failures",
    "progress",
    "seed_papers",
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "192.168.1.5", "example.org")]
    [True, True, True, False, False, False]
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serve_args(args: ServeArgs, config: AgentConfig, api_key: str | None) -> None:
    """Everything ``pasa serve`` can check before loading a model or binding a port; raises ``CheckError``."""
    for name in BATCH_ONLY_FLAGS:
        if getattr(args, name) not in (None, False):
            raise CheckError(
                f"--{name} is a `pasa run` flag; `pasa serve` takes its queries from the page and the API"
            )
    if not is_loopback(args.host) and not api_key:
        raise CheckError(
            f"--host {args.host} is reachable from other machines: set {API_KEY_ENV} (or --api_key) so every API call "
            "needs it, or serve on 127.0.0.1"
        )
    check_int_range(args.port, "--port", 0, 65535)
    check_int_range(args.max_concurrent_searches, "--max_concurrent_searches", 1)
    check_int_range(args.max_queued_searches, "--max_queued_searches", 1)
    check_output_dir(args.output_dir)
    check_online_args(args)
    if args.demo:
        return
    check_model_args(args, config)
    check_source_args(args)


def parse_args(argv: list[str] | None):
    """``(ServeArgs, AgentConfig, HttpConfig)`` from a command line; an unknown flag or a value a dataclass refuses
    is one line and exit status 2, as for ``pasa run``."""
    from pasa.flags import make_parser, parse_dataclasses

    try:
        parser = make_parser(
            (ServeArgs, AgentConfig, HttpConfig),
            prog=PROG,
            example=SERVE_EXAMPLE,
            description="Serve the PaSa agent as a web app and a JSON API; the models load once, searches queue.",
        )
    except ValueError as err:  # a PASA_* variable that is not a number
        exit_with(CheckError(str(err)), PROG)
    args, config, http = parse_dataclasses(parser, argv)
    if args.output_dir is None:
        args.output_dir = DEMO_OUTPUT_DIR if args.demo else DEFAULT_OUTPUT_DIR
    return args, config, http


def load_agent(args: ServeArgs, config: AgentConfig, http: HttpConfig):
    """The agent, models loaded: the demo set-up with ``--demo``, else as ``pasa run`` builds it (the model servers
    and the search service probed first)."""
    if args.demo:
        from pasa.demo import build_demo_agent

        return build_demo_agent(os.path.join(args.output_dir, "demo-model"))
    check_model_servers(args)
    source = build_source(args, getattr(config, "released_behaviour", False), http)
    check_search_service(source, http)
    return build_agent(args, config, source, http)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0: a free one), bound before the server starts so its address can be printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CheckError(f"cannot listen on {host}:{port} ({err.strerror or err}); pick another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from pasa.serve.app import create_app
    from pasa.serve.jobs import SearchQueue

    args, config, http = parse_args(argv)
    setup_logging(args.log_level)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        check_serve_args(args, config, api_key)
        agent = load_agent(args, config, http)
        sock = bind_socket(args.host, args.port)
    except CheckError as err:
        exit_with(err, PROG)
    except (ValueError, OSError) as err:  # no usable paper source, missing key, damaged index
        exit_with(CheckError(str(err).splitlines()[0] if str(err) else type(err).__name__), PROG)
    searches = SearchQueue(agent, args.output_dir, args.max_concurrent_searches, args.max_queued_searches)
    info = {
        "demo": args.demo,
        "crawler": "demo stand-in" if args.demo else args.crawler_path,
        "selector": "tiny random Qwen2" if args.demo else args.selector_path,
    }
    app = create_app(searches, api_key, info)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"PaSa serving on http://{shown}:{port}/ (results in {args.output_dir}; Ctrl-C stops)", flush=True)
    if args.demo:
        print(
            "demo set-up: stand-in crawler, tiny RANDOM selector (scores mean nothing), 16 embedded papers", flush=True
        )
    config = uvicorn.Config(
        app, log_level=args.log_level.lower(), access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn hands Ctrl-C back after its clean shutdown
        pass
    print("PaSa server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
