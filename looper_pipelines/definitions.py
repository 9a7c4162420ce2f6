"""Dagster definitions: ``looper_pipelines.definitions:defs`` (loaded by ``workspace.yaml``).

One asset group per blueprint found, for the home in ``$LOOPER_HOME`` (default ``./.looper``).
"""

from looper_pipelines.defs.build import build_definitions

defs = build_definitions()
