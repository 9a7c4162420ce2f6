"""Entry point of the ``looper`` command: argument parsing and dispatch only.

Each command lives in its own module and imports what it needs when it runs, so
``looper blueprint validate`` does not pay for the orchestration stack.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from looper_pipelines.blueprints import BlueprintError
from looper_pipelines.errors import CommandError, LooperInputError


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=None, help="Looper home folder (default: $LOOPER_HOME or ./.looper)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="looper", description="Looper: ML for product decisions")
    sub = parser.add_subparsers(dest="command", required=True)

    bp = sub.add_parser("blueprint", help="validate or show strategy blueprints")
    bps = bp.add_subparsers(dest="blueprint_command", required=True)
    v = bps.add_parser("validate", help="validate blueprint files (default: every blueprint the home finds)",
                       description="Each file prints 'ok' or one 'looper: error: <file>: <field>: <problem>' line; "
                       "exit 2 when any is invalid.")
    v.add_argument("files", nargs="*")
    _add_home(v)
    s = bps.add_parser("show", help="show a known blueprint, normalised, with its versions")
    s.add_argument("name")
    _add_home(s)
    ls = bps.add_parser("list", help="list known blueprints")
    _add_home(ls)

    sim = sub.add_parser("simulate", help="drive simulated traffic through the real SDK")
    sim.add_argument("--use-case", required=True)
    sim.add_argument("--subjects", type=int, default=2000)
    sim.add_argument("--days", type=int, default=3)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--start", default=None, help="first simulated day, YYYY-MM-DD")
    sim.add_argument("--json", action="store_true")
    _add_home(sim)

    lg = sub.add_parser("logs", help="decision and observation logs")
    lgs = lg.add_subparsers(dest="logs_command", required=True)
    c = lgs.add_parser("compact", help="recover crashed segments and compact sealed ones to Parquet")
    c.add_argument("--use-case", default=None)
    _add_home(c)
    imp = lgs.add_parser("import", help="import existing logged bandit data (CSV or Parquet)")
    imp.add_argument("--use-case", required=True)
    imp.add_argument("--blueprint", required=True, help="blueprint YAML of the imported use case")
    imp.add_argument("--mapping", required=True, help="column mapping YAML (see docs)")
    imp.add_argument("--force", action="store_true",
                     help="import files already imported into this use case again, or replace a different registered blueprint")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--observations", nargs="+", default=[], metavar="FILE",
                     help="observation files (CSV or Parquet), one event per row, of the decisions imported "
                     "with them (mapping section 'observations'); give it after the decision files")
    _add_home(imp)

    st = sub.add_parser("status", help="champion, challenger, checks and tracking URI per use case")
    st.add_argument("--json", action="store_true")
    _add_home(st)

    lp = sub.add_parser("loop", help="closed loop on a simulated product: serve, learn, tune, promote")
    lp.add_argument("--use-case", default="notification_send")
    lp.add_argument("--rounds", type=int, default=3)
    lp.add_argument("--subjects", type=int, default=3000)
    lp.add_argument("--days", type=int, default=3, help="simulated days per round")
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--json", action="store_true", help="one JSON object per round")
    _add_home(lp)

    rn = sub.add_parser("run", help="from logs to a published champion: the data job over days, then the model job",
                        description="Run a use case's data job over a range of days (default: every day with logged "
                        "decisions), then its model job; print every promotion gate's verdict. Exit 0 when a "
                        "challenger was promoted, 3 when a gate kept it out, 2 on errors.")
    rn.add_argument("--use-case", required=True)
    rn.add_argument("--from", dest="from_day", default=None, help="first day, YYYY-MM-DD (default: the first logged)")
    rn.add_argument("--to", dest="to_day", default=None, help="last day, YYYY-MM-DD (default: the last logged)")
    _add_home(rn)

    pr = sub.add_parser("promote", help="make a version the champion by hand (override the gates)")
    pr.add_argument("--use-case", required=True)
    pr.add_argument("--reason", required=True)
    pr.add_argument("--version", default=None, help="registered version (default: the challenger)")
    _add_home(pr)

    rb = sub.add_parser("rollback", help="restore the previous champion and its policy")
    rb.add_argument("--use-case", required=True)
    _add_home(rb)

    demo = sub.add_parser("demo", help="the whole loop on a simulated product, ending with a served champion")
    demo.add_argument("--subjects", type=int, default=6000)
    demo.add_argument("--days", type=int, default=3)
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--seed", type=int, default=0)
    _add_home(demo)

    srv = sub.add_parser("serve", help="serve decisions and observations over HTTP")
    srv.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--token", default=None, help="bearer token required on /v1/* (default: $LOOPER_API_TOKEN; none: open)")
    srv.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger bodies get 413 (default 1 MiB)")
    srv.add_argument("--max-batch", type=int, default=1000, help="most requests in one /v1/decisions:batch call")
    srv.add_argument("--workers", type=int, default=1, help="server processes, each with its own SDK client")
    srv.add_argument("--header-timeout", type=float, default=10.0,
                     help="seconds a client has to send a request's headers (default 10; then 408)")
    srv.add_argument("--body-timeout", type=float, default=30.0,
                     help="seconds a client has to send a request's body once its headers are in (default 30; then 408)")
    srv.add_argument("--durability", choices=["default", "strict", "disabled"], default="default",
                     help="decision log durability (see the SDK)")
    srv.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    srv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _add_home(srv)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # MLflow announces its one-time database set-up at INFO on the console; the commands
    # print their own progress (a level set by the user is kept)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from looper_pipelines.cli import commands

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        return int(handler(args) or 0)
    except (CommandError, BlueprintError, LooperInputError) as e:
        print(f"looper: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
