"""Dagster code location (`orchestration.definitions`) and the `persrm` command line."""
