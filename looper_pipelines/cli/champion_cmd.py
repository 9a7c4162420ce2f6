"""``looper promote`` and ``looper rollback``: move the champion by hand, then republish."""

from __future__ import annotations

import argparse
import os

from looper_pipelines.blueprints import scan_catalog
from looper_pipelines.errors import CommandError
from looper_pipelines.home import HomeLayout


def _context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from looper_pipelines.registry import ModelRegistry

    layout = HomeLayout.of(args.home)
    scanned = scan_catalog(layout.root)
    catalog = scanned.blueprints
    if args.use_case not in catalog:
        raise CommandError(f"--use-case: {scanned.why_missing(args.use_case)}")
    registry = ModelRegistry(os.environ.get("MLFLOW_TRACKING_URI", layout.tracking_uri), layout.artifact_root)
    return layout, registry, catalog[args.use_case]


def _republish(layout: HomeLayout, registry: object, bp: object) -> str:
    from looper_pipelines.promotion.flow import publish_champion

    try:
        return publish_champion(layout, registry, bp).version_id  # type: ignore[arg-type]
    except ValueError as e:
        raise CommandError(str(e)) from None


def promote(args: argparse.Namespace) -> int:
    from looper_pipelines.promotion.flow import promote_by_hand

    if not args.reason.strip():
        raise CommandError("--reason: must not be empty")
    layout, registry, bp = _context(args)
    try:
        entry = promote_by_hand(layout, registry, bp, args.reason, args.version)
    except Exception as e:
        raise CommandError(str(e)) from None
    vid = _republish(layout, registry, bp)
    print(f"{bp.name}: champion is now version {entry['champion']} (was {entry['previous_champion']}); serving {vid}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    from looper_pipelines.promotion.flow import rollback as do_rollback

    layout, registry, bp = _context(args)
    try:
        entry = do_rollback(layout, registry, bp)
    except ValueError as e:
        raise CommandError(str(e)) from None
    vid = _republish(layout, registry, bp)
    print(f"{bp.name}: rolled back to version {entry['champion']} (from {entry['previous_champion']}); serving {vid}")
    return 0
