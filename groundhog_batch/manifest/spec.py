"""The validated manifest: what every later stage works from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..ids import content_id
from ..sweep import Sweep
from ..type_names import Any
from .endpoint_config import ResolvedEndpoint
from .script_shape import Signature


@dataclass(frozen=True)
class EnvironmentSpec:
    """What the task's uv environment is built from; its id names the cached environment."""

    requires_python: str | None
    dependencies: tuple[str, ...]
    tool_uv: dict[str, Any] = field(default_factory=dict)
    python_downloads: bool = False  # where it may be built, not what it is: not part of the id

    @property
    def env_id(self) -> str:
        return content_id(
            {
                "python": self.requires_python,
                "dependencies": sorted(self.dependencies),
                "tool.uv": self.tool_uv,
            },
            length=24,
        )


@dataclass
class JobSpec:
    name: str
    script_path: Path
    script_text: str
    script_sha256: str
    function: str
    signature: Signature | None
    environment: EnvironmentSpec
    endpoint: ResolvedEndpoint
    args: list[Any]
    kwargs: dict[str, Any]
    sweep: Sweep
    calls_per_task: int | str  # an int, or "auto"
    max_parallel: int
    retries: int
    timeout_s: float | None
    n_calls: int
    workdir: str | None = None  # "call": each call runs in its own directory
    memory_mib: float | None = None  # per call (``memory:``): RLIMIT_AS locally, --mem on Slurm

    @property
    def module_name(self) -> str:
        return self.script_path.stem


@dataclass
class RunSpec:
    """A whole manifest, validated and resolved (overrides applied)."""

    name: str
    manifest_path: Path
    manifest_text: str
    overrides: list[str]
    data: dict[str, Any]  # the manifest after overrides, as plain data
    jobs: list[JobSpec]
    output: Path | None
    recorded_inputs: dict[str, str] = field(
        default_factory=dict
    )  # data file -> SHA-256 the run planned from

    @property
    def n_calls(self) -> int:
        return sum(job.n_calls for job in self.jobs)
