"""A job's merged configuration against its endpoint's ``user_config_schema``, before anything is submitted.

The check is the endpoint's own: the config hog-batch will send (with
Groundhog's ``worker_init: ""`` and ``endpoint_setup: ""`` defaults) is
validated with ``jsonschema.validate`` against the published schema, as the
endpoint manager does before rendering its template. So:

- a key the schema does not list is an error only when the schema says
  ``additionalProperties: false`` (the endpoint would refuse it); otherwise it
  is a warning with a did-you-mean, since the template may ignore it;
- a wrong type names the key and the type expected;
- an endpoint whose record cannot be read (403, 404), or a service that does
  not answer the lookup (a 429 storm, an outage), is a warning: the run
  directory is written and the submission waits for the service (or pauses,
  resumable); the endpoint itself still checks when the tasks arrive.

Each error points at the manifest line that set the key, when the manifest
set it (else at the script, whose ``[tool.hog.*]`` table did).
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

from ..errors import BackendError, HogError, ManifestError, ManifestErrors
from ..manifest.spec import JobSpec, RunSpec
from ..manifest.yaml_source import SourceMap, load_yaml_text
from .service import CONFIG_DEFAULTS, EndpointUnreadable, ServiceUnreachable
from .shared_records import endpoint_config

JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def check_endpoint_configs(spec: RunSpec, service) -> dict[str, dict]:
    """Check every remote job; return each endpoint's metadata. Raises ManifestErrors listing every problem."""
    metadata: dict[str, dict] = {}
    problems: list[HogError] = []
    warnings: list[str] = []
    _, source = load_yaml_text(spec.manifest_text, spec.manifest_path)
    for index, job in enumerate(spec.jobs):
        endpoint_id = job.endpoint.endpoint_id
        if endpoint_id is None:
            continue
        if endpoint_id not in metadata:
            try:
                metadata[endpoint_id] = service.endpoint_metadata(endpoint_id)
            except EndpointUnreadable as exc:
                metadata[endpoint_id] = {}
                warn(
                    f"cannot read endpoint {job.endpoint.reference!r} ({endpoint_id}) to check its config "
                    f"({exc}); submitting anyway: the endpoint checks the config when the tasks arrive"
                )
            except (
                ServiceUnreachable
            ) as exc:  # a 429 storm, an outage: the run is written, and waits for the service
                metadata[endpoint_id] = {}
                warn(
                    f"could not look up endpoint {job.endpoint.reference!r} ({endpoint_id}) to check its config "
                    f"({exc.message}); submitting anyway: the endpoint checks the config when the tasks arrive"
                )
            except BackendError as exc:
                raise BackendError(
                    message=f"cannot look up endpoint {job.endpoint.reference!r} ({endpoint_id}): {exc.message}",
                    hint="check the endpoint UUID (`globus-compute-endpoint list` on its host); "
                    + exc.hint,
                ) from None
        schema = metadata[endpoint_id].get("user_config_schema") or {}
        problems += config_problems(job, schema, spec, source, index, warnings)
    for message in dict.fromkeys(warnings):
        warn(message)
    if problems:
        raise ManifestErrors.of(problems)
    return metadata


def config_problems(
    job: JobSpec,
    schema: dict[str, Any],
    spec: RunSpec,
    source: SourceMap,
    index: int,
    warnings: list[str] | None = None,
) -> list[HogError]:
    """Errors the endpoint would raise for this job's config; keys it may ignore go to ``warnings``."""
    config = {
        **CONFIG_DEFAULTS,
        **endpoint_config(job.endpoint.config),
    }  # what the endpoint receives
    listed = schema.get("properties") or {}
    found: list[HogError] = []
    try:
        from jsonschema import validators
        from jsonschema.exceptions import SchemaError

        validator_class = validators.validator_for(schema)
        validator_class.check_schema(schema)
        errors = list(validator_class(schema).iter_errors(config))
    except SchemaError as exc:
        return [
            BackendError(
                message=f"endpoint {job.endpoint.reference!r} publishes an invalid user_config_schema: "
                f"{exc.message}",
                hint="tell the endpoint's administrator; hog-batch cannot check "
                "your config against it",
            )
        ]
    strict = schema.get("additionalProperties") is False
    if listed and not strict and warnings is not None:
        for key in sorted(set(endpoint_config(job.endpoint.config)) - set(listed)):
            close = difflib.get_close_matches(key, list(listed), n=1)
            warnings.append(
                f"endpoint {job.endpoint.reference!r} does not list the config key {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; its template may ignore it (it lists: {', '.join(sorted(listed))})"
            )
    for error in errors:
        if error.validator == "additionalProperties":
            for key in sorted(set(config) - set(listed)):
                close = difflib.get_close_matches(key, list(listed), n=1)
                found.append(
                    _located(
                        spec,
                        source,
                        job,
                        index,
                        key,
                        f"endpoint {job.endpoint.reference!r} does not accept the config key {key!r}",
                        (f"did you mean {close[0]!r}? " if close else "")
                        + f"it accepts: {', '.join(sorted(listed)) or 'no keys'}",
                    )
                )
            continue
        key = str(error.path[0]) if error.path else None
        if error.validator == "type" and key is not None:
            expected = (
                error.validator_value
                if isinstance(error.validator_value, list)
                else [error.validator_value]
            )
            wanted = " or ".join(JSON_TYPES.get(t, t) for t in expected)
            message = f"config key {key!r} is {error.instance!r}; endpoint {job.endpoint.reference!r} expects {wanted}"
        else:
            message = f"config for endpoint {job.endpoint.reference!r}: {error.message}"
        found.append(
            _located(
                spec,
                source,
                job,
                index,
                key,
                message,
                "change the value in the manifest or the script's "
                "[tool.hog] table, or override it with --set config.KEY=VALUE",
            )
        )
    return found


def _located(
    spec: RunSpec,
    source: SourceMap,
    job: JobSpec,
    index: int,
    key: str | None,
    message: str,
    hint: str,
) -> ManifestError:
    """The error at the manifest line that sets ``key`` (highest layer first), else at the script."""
    if key is not None:
        name, *variants = job.endpoint.reference.split(".")
        candidates = [("jobs", index, "config", key), ("config", key)]
        candidates += [
            ("endpoints", name, *variants[:depth], key) for depth in range(len(variants), -1, -1)
        ]
        for path in candidates:
            if path in source.lines:
                return source.error(path, message, hint)
        return ManifestError(
            message=message, hint=hint, file=job.script_path, key_path=("tool", "hog", name, key)
        )
    return ManifestError(message=message, hint=hint, file=spec.manifest_path, key_path=("config",))


__all__ = ["check_endpoint_configs", "config_problems"]
