"""``looper serve``: the HTTP decision service on uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

from looper_pipelines.errors import CommandError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from looper_pipelines.home import resolve_home
    from looper_pipelines.serving.http.app import TOKEN_ENV, app_from_env, create_app
    from looper_pipelines.serving.http.protocol import (
        BODY_TIMEOUT_ENV,
        HEADER_TIMEOUT_ENV,
        LooperHttpProtocol,
    )

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    token = token or None
    if args.max_body_bytes < 1 or args.max_batch < 1:
        raise CommandError("--max-body-bytes and --max-batch must be at least 1")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if not (args.header_timeout > 0 and args.body_timeout > 0):
        raise CommandError("--header-timeout and --body-timeout must be more than 0 seconds")
    # the read timeouts, for this process's protocol and for each worker's
    os.environ[HEADER_TIMEOUT_ENV] = repr(args.header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = repr(args.body_timeout)
    if args.host not in _LOOPBACK and token is None:
        print(
            f"looper: warning: serving on {args.host} without a token; set {TOKEN_ENV} or --token",
            file=sys.stderr,
        )
    home = resolve_home(args.home)
    server_options = {
        "host": args.host,
        "port": args.port,
        "access_log": args.access_log,
        "log_level": args.log_level,
        "loop": "auto",
        "http": LooperHttpProtocol,  # uvicorn's, with the read timeouts
        "lifespan": "on",
    }
    auth = "bearer token required on /v1" if token else "no token"
    if args.workers == 1:
        app = create_app(
            home=home,
            token=token,
            max_body_bytes=args.max_body_bytes,
            max_batch=args.max_batch,
            log_durability=args.durability,
        )
        print(
            f"looper: serving {', '.join(app.client.use_cases) or 'no use cases'} from {home} "
            f"on http://{args.host}:{args.port} ({auth})",
            file=sys.stderr,
            flush=True,
        )
        uvicorn.run(app, **server_options)  # type: ignore[arg-type]
        return 0
    # one process (and one LooperClient, one log writer) per worker, configured by environment
    os.environ["LOOPER_HOME"] = str(home)
    os.environ["LOOPER_HTTP_MAX_BODY_BYTES"] = str(args.max_body_bytes)
    os.environ["LOOPER_HTTP_MAX_BATCH"] = str(args.max_batch)
    os.environ["LOOPER_LOG_DURABILITY"] = args.durability
    if token:
        os.environ[TOKEN_ENV] = token
    else:
        os.environ.pop(TOKEN_ENV, None)
    print(
        f"looper: serving from {home} on http://{args.host}:{args.port} with {args.workers} workers ({auth})",
        file=sys.stderr,
        flush=True,
    )
    assert app_from_env  # the factory the workers import
    uvicorn.run(
        "looper_pipelines.serving.http.app:app_from_env",
        factory=True,
        workers=args.workers,
        **server_options,
    )
    return 0
