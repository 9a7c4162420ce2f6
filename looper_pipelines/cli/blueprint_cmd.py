"""``looper blueprint validate|show|list``."""

from __future__ import annotations

import argparse
import sys

import yaml

from looper_pipelines.blueprints import BlueprintError, load_blueprint, load_catalog
from looper_pipelines.errors import CommandError


def run(args: argparse.Namespace) -> int:
    if args.blueprint_command == "validate":
        failed = 0
        for f in args.files:
            try:
                bp = load_blueprint(f)
            except BlueprintError as e:
                print(e, file=sys.stderr)
                failed += 1
                continue
            print(f"{f}: ok ({bp.name}, version {bp.version}, lineage {bp.lineage_version})")
        return 1 if failed else 0
    catalog = load_catalog(args.home)
    if args.blueprint_command == "list":
        for name, bp in sorted(catalog.items()):
            print(f"{name}\t{bp.decision.kind}\t{bp.version}")
        return 0
    if args.name not in catalog:
        raise CommandError(f"no blueprint named {args.name!r}; known: {sorted(catalog)}")
    bp = catalog[args.name]
    doc = {
        "version": bp.version,
        "lineage_version": bp.lineage_version,
        "policy_version": bp.policy_version,
        "blueprint": bp.normalised(),
    }
    print(yaml.safe_dump(doc, sort_keys=False))
    return 0
