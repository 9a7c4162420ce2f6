"""Dispatch of ``looper`` commands to their modules."""

from __future__ import annotations

import argparse


def cmd_blueprint(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import blueprint_cmd

    return blueprint_cmd.run(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import simulate_cmd

    return simulate_cmd.run(args)


def cmd_logs(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import logs_cmd

    return logs_cmd.run(args)


def cmd_status(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import status_cmd

    return status_cmd.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import demo_cmd

    return demo_cmd.run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import serve_cmd

    return serve_cmd.run(args)


def cmd_loop(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import loop_cmd

    return loop_cmd.run(args)


def cmd_run(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import run_cmd

    return run_cmd.run(args)


def cmd_promote(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import champion_cmd

    return champion_cmd.promote(args)


def cmd_rollback(args: argparse.Namespace) -> int:
    from looper_pipelines.cli import champion_cmd

    return champion_cmd.rollback(args)
