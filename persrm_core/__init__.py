"""persrm_core: plain, typed library behind the persrm pipeline (no Dagster or DVC imports)."""

__version__ = "0.1.0"
