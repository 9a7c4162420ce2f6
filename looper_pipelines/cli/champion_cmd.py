"""``looper promote`` and ``looper rollback``: move the champion by hand, then republish."""

from __future__ import annotations

import argparse
import os

from looper_pipelines.blueprints import scan_catalog
from looper_pipelines.errors import CommandError
from looper_pipelines.home import HomeLayout
from looper_pipelines.serving.manifest import ArtifactError


def _context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from looper_pipelines.registry import ModelRegistry

    layout = HomeLayout.of(args.home)
    scanned = scan_catalog(layout.root)
    catalog = scanned.blueprints
    if args.use_case not in catalog:
        raise CommandError(f"--use-case: {scanned.why_missing(args.use_case)}")
    registry = ModelRegistry(os.environ.get("MLFLOW_TRACKING_URI", layout.tracking_uri), layout.artifact_root)
    return layout, registry, catalog[args.use_case]


def _one_line(e: BaseException) -> str:
    from looper_pipelines.serving.runtime import describe_failure

    return describe_failure(e) if not isinstance(e, ArtifactError) else " ".join(str(e).split())


def promote(args: argparse.Namespace) -> int:
    from looper_pipelines.promotion.flow import promote_by_hand

    if not args.reason.strip():
        raise CommandError("--reason: must not be empty")
    layout, registry, bp = _context(args)
    try:
        entry = promote_by_hand(layout, registry, bp, args.reason, args.version)
    except Exception as e:
        raise CommandError(_one_line(e)) from None
    print(f"{bp.name}: champion is now version {entry['champion']} (was {entry['previous_champion']}); "
          f"serving {entry['serving_version']}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    from looper_pipelines.promotion.flow import rollback as do_rollback

    layout, registry, bp = _context(args)
    try:
        entry = do_rollback(layout, registry, bp)
    except Exception as e:
        raise CommandError(_one_line(e)) from None
    print(f"{bp.name}: rolled back to version {entry['champion']} (from {entry['previous_champion']}); "
          f"serving {entry['serving_version']}")
    return 0
