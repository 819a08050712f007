"""The resource that carries the pipeline's config (profile, params file, data root) to every asset."""


import os

from dagster import ConfigurableResource
from pydantic import Field

from persrm_core.config import DEFAULT_PARAMS, REPO_ROOT, Settings, load_settings


class PersrmConfig(ConfigurableResource):
    """Which profile of `params.yaml` to run, and where the artifacts live."""

    profile: str = Field(default_factory=lambda: os.environ.get("PERSRM_PROFILE", ""),
                         description="Profile in params.yaml (smoke, default, gpu); empty = params' own default.")
    params_path: str = Field(default=str(DEFAULT_PARAMS), description="Path to params.yaml.")
    root: str = Field(default=str(REPO_ROOT), description="Root that relative artifact paths resolve against.")
    progress: bool = Field(default=True, description="Show progress bars on long steps.")

    def settings(self) -> Settings:
        return load_settings(self.profile or None, self.params_path, self.root)
