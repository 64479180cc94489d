"""The ``globus`` kind: an endpoint given by its Globus Compute UUID, and the service's limits in bytes.

Limits come from ``transport`` (exact, offline): a task's request under
10 MB, its result under 10 MiB, its records what is left of that after
stderr; a task never outlives the endpoint config's ``walltime``. The config
is checked against the endpoint's published ``user_config_schema`` just
before a run is created (``config_check``; the one check that asks the service).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..backends.base import BackendContext, BackendKind, ConfigLocator, Limits, parse_walltime_s
from . import transport

if TYPE_CHECKING:
    from ..errors import HogError
    from ..manifest.spec import JobSpec, RunSpec
    from .backend import GlobusBackend

DEFAULT_MAX_PARALLEL = 64  # tasks in flight on an endpoint
MAX_AUTO_CALLS_PER_TASK = 1_000
# With a call's time known (an earlier run, `plan --sample`), `calls_per_task: auto` packs tasks to last about
# this long, never more calls than without it: a lost worker or node then costs minutes of work, not hours.
TARGET_TASK_S = 600.0
MAX_RESULT_BYTES_PER_CALL = (
    4 * 1000 * 1000
)  # pickled; base64 brings it to 5.3 MB, under the result limit
MAX_OUTPUT_BYTES_PER_CALL = 256 * 1024  # each of stdout and stderr


class GlobusKind(BackendKind):
    name = "globus"
    where = "on Globus Compute"
    service = "Globus Compute"
    tasks_outlive_submitter = True

    def claims(self, target: str) -> bool:
        from ..manifest.endpoint_config import UUID_PATTERN

        return bool(UUID_PATTERN.match(target))

    def endpoint_id(self, target: str) -> str:
        return target.lower()

    def limits(self, config: Mapping[str, Any]) -> Limits:
        walltime = config.get("walltime")
        return Limits(
            default_parallelism=DEFAULT_MAX_PARALLEL,
            max_auto_calls_per_task=MAX_AUTO_CALLS_PER_TASK,
            payload_bytes=transport.payload_limit_bytes(),
            payload_limit_text=f"one Globus Compute task can carry (a submission is at most "
            f"{transport.REQUEST_LIMIT_BYTES:,} bytes)",
            payload_limit_hint="pass data files with `pass: path` on a filesystem the endpoint shares, or make the "
            "chunks smaller (rows: or parts:)",
            result_bytes=transport.RESULT_LIMIT_BYTES,
            records_bytes_per_task=transport.stdout_limit_bytes(),
            result_bytes_per_call=MAX_RESULT_BYTES_PER_CALL,
            output_bytes_per_call=MAX_OUTPUT_BYTES_PER_CALL,
            walltime=walltime,
            walltime_s=parse_walltime_s(walltime),
            task_walltime=True,
            target_task_s=TARGET_TASK_S,
        )

    def config_problems(self, job: JobSpec, locate: ConfigLocator) -> list[HogError]:
        """``shared_records_dir`` (hog-batch's own key, never sent to the endpoint) is a folder's path."""
        from .shared_records import CONFIG_KEY

        value = job.endpoint.config.get(CONFIG_KEY)
        if value is None or (isinstance(value, str) and value.strip()):
            return []
        return [
            locate(
                CONFIG_KEY,
                f"{CONFIG_KEY} must be a folder's path, got {value!r}",
                "name a folder on a filesystem this machine and the endpoint's workers share, "
                "e.g. shared_records_dir: /scratch/$USER/hog-batch",
            )
        ]

    def limits_report(self, limits: Limits, largest_payload_bytes: int) -> dict[str, Any]:
        return {
            "request_bytes": transport.REQUEST_LIMIT_BYTES,
            "largest_request_bytes": transport.request_bytes_for_size(largest_payload_bytes)
            + transport.REQUEST_FIXED_RESERVE_BYTES,
            "result_bytes": transport.RESULT_LIMIT_BYTES,
            "records_bytes_per_task": transport.stdout_limit_bytes(),
        }

    def check(self, spec: RunSpec) -> None:
        from .config_check import check_endpoint_configs
        from .service import ComputeService
        from .shared_records import check_named_dir, named_dir

        for job in spec.jobs:  # a shared folder we cannot trust stops the run before it exists
            base = named_dir(job.endpoint.config)
            if base is not None:
                check_named_dir(base)
        check_endpoint_configs(spec, ComputeService())

    def open(self, context: BackendContext) -> GlobusBackend:
        from .backend import GlobusBackend

        return GlobusBackend(context)


KIND = GlobusKind()

__all__ = ["KIND", "GlobusKind"]
