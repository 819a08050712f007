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


class GenerationBackend(ConfigurableResource):
    """The LLM behind the LLM negative strategies. Empty fields keep params.yaml's `generation`
    section; a run (or a test) swaps the backend here without editing params.yaml. The API key is
    never a field: `api_key_env` names the environment variable that holds it."""

    backend: str = Field(default="", description="rules | transformers | openai | vllm; empty = params.yaml's.")
    model: str = Field(default="", description="HF id/path or served model name; empty = params.yaml's.")
    base_url: str = Field(default="", description="openai: the server's /v1 URL; empty = params.yaml's.")
    api_key_env: str = Field(default="", description="openai: variable holding the key; empty = params.yaml's.")

    def apply(self, s: Settings) -> Settings:
        import dataclasses

        over = {k: v for k, v in (("backend", self.backend), ("model", self.model), ("base_url", self.base_url),
                                  ("api_key_env", self.api_key_env)) if v}
        return dataclasses.replace(s, generation=dataclasses.replace(s.generation, **over)) if over else s


def default_resources(**persrm: object) -> dict[str, ConfigurableResource]:
    """Every resource the assets need; `persrm` sets PersrmConfig's fields."""
    return {"persrm": PersrmConfig(**persrm), "generation": GenerationBackend()}
