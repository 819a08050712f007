"""The three resources every asset is built from, each swappable on its own (per run in the
launchpad's config, or in a test's `resources=`):

* `compute` (`ComputeProfile`): which profile of which params file runs, and whether long steps
  show progress bars. A profile (smoke, default, gpu) decides model size, dtype, launcher, steps.
* `store` (`ArtifactStore`): where artifacts live (the root relative paths resolve against) and
  where new exemplar texts land before they are ingested.
* `generation` (`GenerationBackend`): the LLM behind the LLM negative strategies.
"""

import dataclasses
import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from persrm_core.config import Settings, default_params_path, load_settings

INCOMING_ENV = "PERSRM_INCOMING"
DEFAULT_INCOMING = "data/incoming"


class ArtifactStore(ConfigurableResource):
    """Where the chain's artifacts live. Empty fields keep the defaults, so a test or a second
    checkout points a whole run somewhere else by setting `root` alone."""

    root: str = Field(default="", description="Root that relative artifact paths (params.yaml `paths`) resolve "
                      "against; empty = the directory of params.yaml.")
    incoming: str = Field(default="", description="Landing folder for new texts, one sub-folder per author; empty "
                          f"= ${INCOMING_ENV}, else {DEFAULT_INCOMING}. Relative = against the root.")
    land_incoming: bool = Field(default=True, description="Ingesting an author first copies the author's new "
                                "texts from the incoming folder into paths.raw; false = read paths.raw only "
                                "(what `dvc repro` does: it reproduces from versioned data).")

    def base(self, params_path: str | Path | None = None) -> Path:
        return Path(self.root) if self.root else Path(params_path or default_params_path()).resolve().parent

    def incoming_dir(self, params_path: str | Path | None = None) -> Path:
        p = Path(self.incoming or os.environ.get(INCOMING_ENV) or DEFAULT_INCOMING).expanduser()
        return p if p.is_absolute() else self.base(params_path) / p


class ComputeProfile(ConfigurableResource):
    """Which profile of `params.yaml` runs: the knob that moves a run between the CPU demo, the
    smoke test and a GPU box."""

    profile: str = Field(default_factory=lambda: os.environ.get("PERSRM_PROFILE", ""),
                         description="Profile in params.yaml (smoke, default, gpu); empty = params' own default.")
    params_path: str = Field(default="", description="Path to params.yaml; empty = $PERSRM_PARAMS, "
                             "./params.yaml, or the repository's.")
    progress: bool = Field(default=True, description="Show progress bars on long steps.")

    def settings(self, store: ArtifactStore) -> Settings:
        return load_settings(self.profile or None, self.params_path or None, store.root or None)


class GenerationBackend(ConfigurableResource):
    """The LLM behind the LLM negative strategies. Empty fields keep params.yaml's `generation`
    section; a run (or a test) swaps the backend here without editing params.yaml. The API key is
    never a field: `api_key_env` names the environment variable that holds it."""

    backend: str = Field(default="", description="rules | transformers | openai | vllm; empty = params.yaml's.")
    model: str = Field(default="", description="HF id/path or served model name; empty = params.yaml's.")
    base_url: str = Field(default="", description="openai: the server's /v1 URL; empty = params.yaml's.")
    api_key_env: str = Field(default="", description="openai: variable holding the key; empty = params.yaml's.")

    def apply(self, s: Settings) -> Settings:
        over = {k: v for k, v in (("backend", self.backend), ("model", self.model), ("base_url", self.base_url),
                                  ("api_key_env", self.api_key_env)) if v}
        return dataclasses.replace(s, generation=dataclasses.replace(s.generation, **over)) if over else s


def default_resources(profile: str | None = None, params_path: str | None = None, root: str | None = None,
                      progress: bool = True, incoming: str | None = None,
                      land_incoming: bool = True) -> dict[str, ConfigurableResource]:
    """Every resource the assets need; empty arguments keep each resource's defaults."""
    compute = {k: v for k, v in (("profile", profile), ("params_path", params_path)) if v}
    store = {k: v for k, v in (("root", root), ("incoming", incoming)) if v}
    return {"compute": ComputeProfile(**compute, progress=progress),
            "store": ArtifactStore(**store, land_incoming=land_incoming),
            "generation": GenerationBackend()}
