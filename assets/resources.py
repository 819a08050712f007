"""The resource that carries the pipeline's config (profile, params file, data root) to every asset."""


import os

from dagster import ConfigurableResource
from pydantic import Field

from persrm_core.config import Settings, load_settings


class PersrmConfig(ConfigurableResource):
    """Which profile of `params.yaml` to run, and where the artifacts live."""

    profile: str = Field(default_factory=lambda: os.environ.get("PERSRM_PROFILE", ""),
                         description="Profile in params.yaml (smoke, default, gpu); empty = params' own default.")
    params_path: str = Field(default="", description="Path to params.yaml; empty = $PERSRM_PARAMS, "
                             "./params.yaml, or the repository's.")
    root: str = Field(default="", description="Root that relative artifact paths resolve against; "
                      "empty = the directory of params.yaml.")
    progress: bool = Field(default=True, description="Show progress bars on long steps.")

    def settings(self) -> Settings:
        return load_settings(self.profile or None, self.params_path or None, self.root or None)
