"""``looper logs compact`` and ``looper logs import``."""

from __future__ import annotations

import argparse

from looper_pipelines.errors import CommandError
from looper_pipelines.home import resolve_home


def run(args: argparse.Namespace) -> int:
    if args.logs_command == "compact":
        return _compact(args)
    if args.logs_command == "import":
        return _import(args)
    raise CommandError(f"unknown logs command {args.logs_command!r}")


def _compact(args: argparse.Namespace) -> int:
    from looper_pipelines.logs import compact, recover

    home = resolve_home(args.home)
    try:
        recovered = recover(home)
        report = compact(home, args.use_case)
    except ValueError as e:  # an invalid use case name
        raise CommandError(str(e)) from None
    print(f"home: {home}")
    print("recovered: " + ", ".join(f"{k}={v}" for k, v in recovered.items()))
    print("compacted: " + ", ".join(f"{k}={v}" for k, v in report.items()))
    return 0


def _import(args: argparse.Namespace) -> int:
    from looper_pipelines.logs.importer import import_logs

    home = resolve_home(args.home)
    report = import_logs(
        home,
        args.use_case,
        args.blueprint,
        args.mapping,
        args.files,
        observation_files=list(getattr(args, "observations", None) or []),
        force=bool(getattr(args, "force", False)),
    )
    print(f"home: {home}")
    print(report.summary())
    return 0
