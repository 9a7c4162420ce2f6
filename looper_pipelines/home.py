"""The Looper home folder: everything the embedded default writes lives under it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "./.looper"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home``, else ``$LOOPER_HOME``, else ``./.looper`` (absolute, created if missing)."""
    p = Path(home if home is not None else os.environ.get("LOOPER_HOME", DEFAULT_HOME))
    p = p.expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    @classmethod
    def of(cls, home: str | os.PathLike[str] | None = None) -> HomeLayout:
        return cls(resolve_home(home))

    @property
    def logs(self) -> Path:
        """Append-only segments and compacted Parquet (``<kind>/use_case=…/date=…``)."""
        return self.root / "logs"

    @property
    def warehouse(self) -> Path:
        """The DuckDB file; only dbt writes it."""
        return self.root / "warehouse" / "looper.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.mlflow / "artifacts"

    @property
    def serving(self) -> Path:
        """Published serving artifacts (compiled library + manifest) per use case."""
        return self.root / "serving"

    @property
    def blueprints(self) -> Path:
        """Blueprints registered by ``looper logs import`` for imported use cases."""
        return self.root / "blueprints"

    @property
    def state(self) -> Path:
        """Small JSON state files (promotion history, loop reports)."""
        return self.root / "state"
