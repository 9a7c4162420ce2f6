"""``looper blueprint validate|show|list``."""

from __future__ import annotations

import argparse
import sys

import yaml

from looper_pipelines.blueprints import Blueprint, BlueprintError, load_blueprint, scan_catalog
from looper_pipelines.errors import CommandError
from looper_pipelines.safe_yaml import one_line


def _ok(source: str, bp: Blueprint) -> str:
    return f"{one_line(source, 300)}: ok ({bp.name}, version {bp.version}, lineage {bp.lineage_version})"


def validate(files: list[str], home: str | None) -> int:
    """``looper blueprint validate [FILE...]``: each file (default: every blueprint the home
    finds) is ``ok`` on stdout or one ``looper: error: <file>: <field>: <problem>`` line on
    stderr; exit 2 when any is invalid."""
    failed = 0
    if not files:
        cat = scan_catalog(home)
        for bp in cat.blueprints.values():
            print(_ok(bp.name, bp))
        for e in cat.broken.values():
            print(f"looper: error: {e}", file=sys.stderr)
        return 2 if cat.broken else 0
    for f in files:
        try:
            bp = load_blueprint(f)
        except BlueprintError as e:
            print(f"looper: error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(_ok(f, bp))
    return 2 if failed else 0


def run(args: argparse.Namespace) -> int:
    if args.blueprint_command == "validate":
        return validate(args.files, args.home)
    scanned = scan_catalog(args.home)
    for e in scanned.broken.values():
        print(f"looper: warning: broken blueprint, not loaded: {e}", file=sys.stderr)
    catalog = scanned.blueprints
    if args.blueprint_command == "list":
        for name, bp in sorted(catalog.items()):
            print(f"{name}\t{bp.decision.kind}\t{bp.version}")
        return 0
    if args.name not in catalog:
        raise CommandError(scanned.why_missing(args.name))
    bp = catalog[args.name]
    doc = {
        "version": bp.version,
        "lineage_version": bp.lineage_version,
        "policy_version": bp.policy_version,
        "blueprint": bp.normalised(),
    }
    print(yaml.safe_dump(doc, sort_keys=False))
    return 0
