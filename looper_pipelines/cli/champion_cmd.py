"""``looper promote`` and ``looper rollback``: move the champion by hand, then republish."""

from __future__ import annotations

import argparse
import os

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.errors import CommandError
from looper_pipelines.home import HomeLayout


def _context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from looper_pipelines.registry import ModelRegistry

    layout = HomeLayout.of(args.home)
    catalog = load_catalog(layout.root)
    if args.use_case not in catalog:
        raise CommandError(f"--use-case: no blueprint named {args.use_case!r}; known: {sorted(catalog)}")
    registry = ModelRegistry(os.environ.get("MLFLOW_TRACKING_URI", layout.tracking_uri), layout.artifact_root)
    return layout, registry, catalog[args.use_case]


def _republish(layout: HomeLayout, registry: object, bp: object) -> str:
    from looper_pipelines.evaluation.holdout import all_examples, holdout
    from looper_pipelines.promotion.flow import build_champion_artifact
    from looper_pipelines.serving.publish import activate, parity

    vid, _, boosters = build_champion_artifact(layout, registry, bp)  # type: ignore[arg-type]
    valid = holdout(bp, all_examples(bp, layout.warehouse))  # type: ignore[arg-type]
    worst = max(parity(layout, bp.name, vid, boosters, valid.x_with_action).values())  # type: ignore[attr-defined]
    if worst > 1e-6:
        raise CommandError(f"compiled artifact {vid} differs from LightGBM by {worst:g}; not published")
    activate(layout, bp.name, vid)  # type: ignore[attr-defined]
    return vid


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
