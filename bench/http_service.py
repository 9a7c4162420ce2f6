"""The HTTP decision service under load, against two references on the same server software.

Five servers, each one uvicorn worker (uvloop and httptools when installed, no access
log), driven in turn by an external load generator (``wrk``: 32 connections, POST bodies
from a Lua script):

  raw-noop   a Starlette route that returns ``{}`` without reading the body
  fastapi    a plain FastAPI endpoint with a pydantic body that calls
             ``lightgbm.Booster.predict`` on one row (a tiny booster trained here)
  looper     ``looper serve``: ``POST /v1/decisions`` (validated, decided, logged durably),
             the batch endpoint (100 decisions a request) and ``POST /v1/observations``;
             it serves a published, compiled champion: one model per label (click,
             unsubscribe) of the reference's size (50 trees of 15 leaves), each scoring
             both actions, so a decision makes four predictions to the reference's one
  looper, cold start    the same service on a home with no champion (the default action,
             exploration and the experiment split; no model)
  looper, SDK stubbed   the same service with the SDK's decision call replaced by a fixed answer:
             what the HTTP layer costs by itself (diagnostic)

It prints requests/s, p50/p99 latency and the server's CPU time per request of each, the
ratios looper/raw-noop (goal >= 0.7) and looper/fastapi, both by measured requests/s and
by server CPU per request (the latter barely moves with other load on the machine), and
decisions/s through the batch endpoint. The servers run on CPU 0
and wrk on CPU 1 when there are at least two. Before the load runs it also times, in this
process, the hand-written envelope check against a cached pydantic ``TypeAdapter`` and the
in-process SDK call.

Without wrk it says so and falls back to a Python (httpx, asyncio) load generator, whose
figures are then bound by the client rather than the server.

    python bench/http_service.py                    # ~10 s a target
    python bench/http_service.py --duration 3       # quicker
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path: drop it, so that no benchmark
# module there can shadow a standard library module for the libraries imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import re  # noqa: E402
import runpy  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
from pydantic import BaseModel  # noqa: E402

UC = "notification_send"
publish_champion = runpy.run_path(os.path.join(_HERE, "champion.py"))["publish_champion"]
FEATURES = {"tenure_days": 12.5, "sessions_last_7d": 3, "hour_of_day": 20, "platform": "ios"}
DECISION = {"use_case": UC, "subject_id": "user-42", "features": FEATURES}
FEATURE_ORDER = ["tenure_days", "sessions_last_7d", "days_since_last_visit", "notif_open_rate",
                 "notifs_last_7d", "platform", "hour_of_day"]  # fmt: skip
PLATFORMS = {"ios": 0.0, "android": 1.0, "web": 2.0}


# -- the reference servers (run in child processes) ------------------------------------------
class Features(BaseModel):
    tenure_days: float
    sessions_last_7d: int = 0
    days_since_last_visit: float = 30.0
    notif_open_rate: float | None = None
    notifs_last_7d: int = 0
    platform: str = "web"
    hour_of_day: int


class DecisionBody(BaseModel):
    use_case: str
    subject_id: str
    features: Features


def noop_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def noop(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/noop", noop, methods=["POST"]), Route("/healthz", noop)])


def fastapi_app() -> Any:
    import lightgbm as lgb
    import numpy as np
    from fastapi import FastAPI

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURE_ORDER)))
    y = (x[:, 0] + rng.normal(size=2000) > 0).astype(float)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=50)

    app = FastAPI()

    @app.post("/predict")
    async def predict(body: DecisionBody) -> dict[str, float]:
        f = body.features
        row = [f.tenure_days, f.sessions_last_7d, f.days_since_last_visit,
               np.nan if f.notif_open_rate is None else f.notif_open_rate, f.notifs_last_7d,
               PLATFORMS.get(f.platform, np.nan), f.hour_of_day]  # fmt: skip
        return {"score": float(booster.predict(np.asarray([row]))[0])}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def stubbed_looper_app(home: str) -> Any:
    """The looper service with the SDK call replaced by a fixed answer: what the HTTP layer
    costs by itself (diagnostic; nothing is decided or logged)."""
    from looper_pipelines.serving.http import create_app

    app = create_app(home=home)
    fixed = app.client.decide_record(UC, "user-42", FEATURES)
    app.client.decide_record = lambda use_case, subject_id, features: fixed  # type: ignore[method-assign]
    return app


def serve_reference(kind: str, port: int, home: str | None) -> None:
    import uvicorn

    if kind == "noop":
        app = noop_app()
    elif kind == "fastapi":
        app = fastapi_app()
    else:
        assert home is not None
        app = stubbed_looper_app(home)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", loop="auto", http="auto")


# -- process management ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(name: str, cmd: list[str], port: int, cpu: int | None) -> Server:
    proc = subprocess.Popen(cmd, preexec_fn=pinned(cpu), stdout=subprocess.DEVNULL)
    return Server(name, proc, f"http://127.0.0.1:{port}")


# -- load generators ------------------------------------------------------------------------
@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    cpu_s: float = float("nan")  # CPU time the server process spent meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU per request: unlike req/s, barely moved by other load on the machine."""
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")


_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def run_wrk(url: str, body: bytes, seconds: float, connections: int, cpu: int | None, workdir: Path) -> Result:
    script = workdir / "post.lua"
    script.write_text(_LUA % body.decode())
    threads = 1 if (os.cpu_count() or 1) <= 2 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(script), url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, preexec_fn=pinned(cpu)).stdout
    m = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    n, dur_us, p50, p99, failures = (int(g) for g in m.groups())
    return Result(n, dur_us / 1e6, p50 / 1000, p99 / 1000, failures)


def run_python(url: str, body: bytes, seconds: float, connections: int) -> Result:
    import httpx

    async def go() -> Result:
        latencies: list[float] = []
        failures = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            t0 = time.perf_counter()
            deadline = t0 + seconds

            async def worker() -> None:
                nonlocal failures
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    r = await client.post(url, content=body, headers=headers)
                    latencies.append(time.perf_counter() - t)
                    failures += r.status_code >= 300

            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - t0
        q = statistics.quantiles(latencies, n=100)
        return Result(len(latencies), elapsed, q[49] * 1000, q[98] * 1000, failures)

    return asyncio.run(go())


# -- in-process micro-measurements ----------------------------------------------------------
def per_call_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 1000)):
        fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def asgi_call_us(app: Any, path: str, body: bytes, n: int) -> float:
    """One request through an ASGI application, without a server or a socket."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        return None

    async def run() -> float:
        for _ in range(min(n, 1000)):
            await app(dict(scope), receive, send)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(n):
                await app(dict(scope), receive, send)
            best = min(best, (time.perf_counter() - t) / n)
        return best * 1e6

    return asyncio.run(run())


def micro(workdir: Path) -> None:
    from pydantic import TypeAdapter

    from looper_pipelines.serving.http import create_app
    from looper_pipelines.serving.http.schemas import DecisionRequest, check_decision

    body = orjson.dumps(DECISION)
    adapter = TypeAdapter(DecisionRequest)
    parse = per_call_us(lambda: orjson.loads(body), 50_000)
    hand = per_call_us(lambda: check_decision(orjson.loads(body)), 50_000)
    pyd = per_call_us(lambda: adapter.validate_python(orjson.loads(body)), 50_000)
    pyd_json = per_call_us(lambda: adapter.validate_json(body), 50_000)
    print("in-process, per request (best of 3):")
    print(f"  orjson.loads alone                          {parse:7.2f} us")
    print(f"  orjson.loads + hand-written envelope check  {hand:7.2f} us   <- used")
    print(f"  orjson.loads + TypeAdapter.validate_python  {pyd:7.2f} us")
    print(f"  TypeAdapter.validate_json                   {pyd_json:7.2f} us")
    publish_champion(workdir / "micro-home")
    app = create_app(home=workdir / "micro-home", refresh_interval_s=0)
    assert app.client.deployment(UC).model_version == "bench"
    try:
        sdk = per_call_us(lambda: app.client.get_decision(UC, "user-42", FEATURES), 5_000)
        looper = asgi_call_us(app, "/v1/decisions", body, 5_000)
    finally:
        app.close()
        app.client.close()
    noop = asgi_call_us(noop_app(), "/noop", body, 20_000)
    print(f"  SDK get_decision (logged, compiled champion) {sdk:6.2f} us")
    print(f"  ASGI call, looper POST /v1/decisions        {looper:7.2f} us   (SDK included)")
    print(f"  ASGI call, Starlette no-op route            {noop:7.2f} us")
    print()


# -- the run --------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per target")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the targets; the median is reported")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--no-pin", action="store_true", help="do not pin servers to CPU 0 and wrk to CPU 1")
    ap.add_argument("--serve", choices=["noop", "fastapi", "looper-stub"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_reference(args.serve, args.port, args.home)
        return 0

    wrk = shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    use_wrk = wrk is not None and args.loadgen != "python"
    if not use_wrk:
        print("NOTE: wrk not found (or --loadgen python): using the Python load generator (httpx); "
              "its figures are bound by the client, not the server, and understate every target.\n")  # fmt: skip
    two_cpus = not args.no_pin and len(os.sched_getaffinity(0)) >= 2 and use_wrk
    server_cpu, load_cpu = (0, 1) if two_cpus else (None, None)

    workdir = Path(tempfile.mkdtemp(prefix="looper-bench-http-"))
    servers: list[Server] = []
    try:
        micro(workdir)
        publish_champion(workdir / "home")
        ports = {k: free_port() for k in ("noop", "fastapi", "looper", "cold", "stub")}
        me = [sys.executable, os.path.abspath(__file__)]
        servers = [
            start("raw-noop", [*me, "--serve", "noop", "--port", str(ports["noop"])], ports["noop"], server_cpu),
            start("fastapi", [*me, "--serve", "fastapi", "--port", str(ports["fastapi"])], ports["fastapi"], server_cpu),
            start("looper", [sys.executable, "-m", "looper_pipelines.cli.main", "serve", "--home",
                             str(workdir / "home"), "--port", str(ports["looper"]), "--log-level", "warning"],
                  ports["looper"], server_cpu),
            start("looper-cold", [sys.executable, "-m", "looper_pipelines.cli.main", "serve", "--home",
                                  str(workdir / "cold-home"), "--port", str(ports["cold"]), "--log-level",
                                  "warning"], ports["cold"], server_cpu),
            start("looper-stub", [*me, "--serve", "looper-stub", "--port", str(ports["stub"]), "--home",
                                  str(workdir / "stub-home")], ports["stub"], server_cpu),
        ]  # fmt: skip
        for s in servers:
            s.wait_ready()
        by_name = {s.name: s for s in servers}

        import httpx

        looper = by_name["looper"].url
        first = httpx.post(f"{looper}/v1/decisions", json=DECISION).json()
        assert first["model_version"] == "bench", first  # the compiled champion decides
        decision_id = first["decision_id"]
        batch = {"requests": [DECISION | {"subject_id": f"user-{i}"} for i in range(args.batch_size)]}
        r = httpx.post(f"{looper}/v1/decisions:batch", json=batch)
        assert r.status_code == 200 and len(r.json()["decisions"]) == args.batch_size, r.text
        fastapi_check = httpx.post(f"{by_name['fastapi'].url}/predict", json=DECISION)
        assert fastapi_check.status_code == 200, fastapi_check.text
        lp = by_name["looper"]
        targets = [
            ("raw-noop", by_name["raw-noop"], f"{by_name['raw-noop'].url}/noop", orjson.dumps(DECISION)),
            ("fastapi+lightgbm", by_name["fastapi"], f"{by_name['fastapi'].url}/predict", orjson.dumps(DECISION)),
            ("looper decision", lp, f"{looper}/v1/decisions", orjson.dumps(DECISION)),
            (f"looper batch x{args.batch_size}", lp, f"{looper}/v1/decisions:batch", orjson.dumps(batch)),
            ("looper observation", lp, f"{looper}/v1/observations",
             orjson.dumps({"decision_id": decision_id, "name": "click", "value": 1})),
            ("looper, cold start", by_name["looper-cold"], f"{by_name['looper-cold'].url}/v1/decisions",
             orjson.dumps(DECISION)),
            ("looper, SDK stubbed", by_name["looper-stub"], f"{by_name['looper-stub'].url}/v1/decisions",
             orjson.dumps(DECISION)),
        ]  # fmt: skip

        def measure(server: Server, url: str, body: bytes, seconds: float) -> Result:
            before = cpu_seconds(server.proc.pid)
            if use_wrk:
                r = run_wrk(url, body, seconds, args.connections, load_cpu, workdir)
            else:
                r = run_python(url, body, seconds, args.connections)
            r.cpu_s = cpu_seconds(server.proc.pid) - before
            return r

        results: dict[str, list[Result]] = {name: [] for name, _, _, _ in targets}
        for _ in range(args.rounds):
            for name, server, url, body in targets:
                if args.warmup > 0:
                    measure(server, url, body, args.warmup)
                results[name].append(measure(server, url, body, args.duration))

        def med(name: str) -> Result:
            rs = sorted(results[name], key=lambda r: r.rps)
            return rs[len(rs) // 2]

        def med_cpu(name: str) -> float:
            return statistics.median(r.cpu_us for r in results[name])

        loadgen = f"wrk, {args.connections} connections" if use_wrk else f"httpx, {args.connections} tasks"
        pin = "servers on CPU 0, wrk on CPU 1" if two_cpus else "not pinned"
        print(f"load: {loadgen}, {args.duration:g} s per target, median of {args.rounds}; {pin}; "
              f"one uvicorn worker each\n")  # fmt: skip
        print(f"{'target':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
              f"{'server CPU us/req':>19}{'req/s per core':>16}")  # fmt: skip
        for name, _, _, _ in targets:
            r, cpu = med(name), med_cpu(name)
            print(f"{name:<22}{r.rps:>10,.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.failures:>8}"
                  f"{cpu:>19.1f}{1e6 / cpu:>16,.0f}")  # fmt: skip
        noop, fast, dec = med("raw-noop").rps, med("fastapi+lightgbm").rps, med("looper decision").rps
        batch_name = f"looper batch x{args.batch_size}"
        batch_rps = med(batch_name).rps
        cpu_noop, cpu_fast, cpu_dec = med_cpu("raw-noop"), med_cpu("fastapi+lightgbm"), med_cpu("looper decision")
        print()
        print("                                measured req/s   by server CPU per request")
        print(f"looper decision / raw-noop     {dec / noop:10.2f}   {cpu_noop / cpu_dec:16.2f}   (goal >= 0.70)")
        print(f"looper decision / fastapi      {dec / fast:10.2f}   {cpu_fast / cpu_dec:16.2f}")
        cold, cpu_cold = med("looper, cold start").rps, med_cpu("looper, cold start")
        print(f"cold start (no model) / raw-noop {cold / noop:8.2f}   {cpu_noop / cpu_cold:16.2f}")
        stub, cpu_stub = med("looper, SDK stubbed").rps, med_cpu("looper, SDK stubbed")
        print(f"HTTP layer alone / raw-noop    {stub / noop:10.2f}   {cpu_noop / cpu_stub:16.2f}   (SDK stubbed)")
        print(f"decisions/s through the batch endpoint: {batch_rps * args.batch_size:,.0f} measured, "
              f"{1e6 / med_cpu(batch_name) * args.batch_size:,.0f} per server core "
              f"({args.batch_size} a request)")  # fmt: skip
        print(f"load average after the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs (other load on the machine lowers req/s, not CPU per request)")  # fmt: skip
        if any(r.failures for rs in results.values() for r in rs):
            print("WARNING: some requests failed or got a non-2xx status", file=sys.stderr)
            return 1
        return 0
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
