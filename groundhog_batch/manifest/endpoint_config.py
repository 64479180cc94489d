"""Where a job runs and with which configuration: the precedence, written once.

Configuration layers, lowest first (a later layer wins)::

    1. the script's [tool.hog.NAME]
    2. its variants along NAME.VARIANT...        ([tool.hog.NAME.VARIANT], deeper wins)
    3. the manifest's endpoints.NAME, then its variants along the same path
    4. the manifest's top-level config
    5. the job's config
    6. --set config.KEY=VALUE on the command line

``worker_init`` and ``endpoint_setup`` are shell snippets: they are
concatenated, lower layers first, one per line. Every other key is replaced
whole by a higher layer. Inside an endpoint table, ``endpoint`` holds the
endpoint UUID (a variant may point elsewhere), and a nested table is a
variant; a nested table that is not on the selected path is not applied but
is listed among the variants, so nothing is dropped unseen. Groundhog
scripts with ``[tool.hog.*]`` tables work unchanged.

Every endpoint resolves to a backend kind (``backends.registry``): ``local``;
a Globus Compute UUID (``globus``); or a table whose ``endpoint`` names a kind
(``endpoint: slurm``) or holds a UUID. A reference that names no table but
that a kind claims (a UUID) is that kind directly, with the top layers only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..type_names import Any

LOCAL = "local"
CONCATENATED_KEYS = ("worker_init", "endpoint_setup")
UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


@dataclass(frozen=True)
class ResolvedEndpoint:
    reference: str  # as written: local, a UUID, or NAME.VARIANT...
    kind: str  # the backend kind it runs on (local, globus, slurm), as run.json records it
    endpoint_id: (
        str | None
    )  # the kind's address of it (a Globus endpoint UUID); None when it has none
    config: dict[str, Any] = field(default_factory=dict)
    unused_variants: tuple[str, ...] = ()


class EndpointNotFound(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def merge_config_layers(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge configuration layers, lowest first, by the rule in this module's docstring."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in CONCATENATED_KEYS and key in merged and merged[key] and value:
                merged[key] = f"{merged[key]}\n{value}"
            else:
                merged[key] = value
    return merged


def _split_table(table: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An endpoint table's own options, and its variants (nested tables)."""
    options = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    variants = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    return options, variants


def _walk_variants(table: Mapping[str, Any] | None, variants: Sequence[str], name: str):
    """The option layers of ``table`` along ``variants`` (as deep as it goes), and the variants not taken."""
    layers: list[dict[str, Any]] = []
    unused: list[str] = []
    path = name
    for depth in range(len(variants) + 1):
        if table is None:
            break
        options, nested = _split_table(table)
        layers.append(options)
        chosen = variants[depth] if depth < len(variants) else None
        unused += [f"{path}.{variant}" for variant in nested if variant != chosen]
        if chosen is None:
            break
        table = nested.get(chosen)
        path = f"{path}.{chosen}"
    return layers, unused


def resolve_endpoint(
    reference: str,
    script_endpoints: Mapping[str, Any],
    manifest_endpoints: Mapping[str, Any],
    manifest_config: Mapping[str, Any],
    job_config: Mapping[str, Any],
    cli_config: Mapping[str, Any],
) -> ResolvedEndpoint:
    """Resolve an endpoint reference and merge its configuration (see the module docstring)."""
    from ..backends import registry

    top_layers = [manifest_config, job_config, cli_config]
    name, *variants = reference.split(".")
    script_table = script_endpoints.get(name)
    manifest_table = manifest_endpoints.get(name)
    direct = registry.claiming(reference)
    if direct is not None and (
        reference == LOCAL or (script_table is None and manifest_table is None)
    ):
        return ResolvedEndpoint(
            reference, direct.name, direct.endpoint_id(reference), merge_config_layers(top_layers)
        )
    if script_table is None and manifest_table is None:
        known = sorted({*script_endpoints, *manifest_endpoints})
        raise EndpointNotFound(
            f"unknown endpoint {reference!r}",
            (
                f"known endpoints: local, {', '.join(known)}"
                if known
                else "define it under `endpoints:` in the manifest or [tool.hog.NAME] in the script"
            )
            + "; or give an endpoint UUID",
        )
    script_layers, script_unused = _walk_variants(script_table, variants, name)
    manifest_layers, manifest_unused = _walk_variants(manifest_table, variants, name)
    for depth in range(1, len(variants) + 1):
        wanted = ".".join([name, *variants[:depth]])
        if len(script_layers) <= depth and len(manifest_layers) <= depth:
            available = sorted({*script_unused, *manifest_unused})
            raise EndpointNotFound(
                f"endpoint {name!r} has no variant {wanted!r}",
                f"variants defined: {', '.join(available)}"
                if available
                else f"add a table [tool.hog.{wanted}] or endpoints.{wanted}",
            )
    merged = merge_config_layers([*script_layers, *manifest_layers, *top_layers])
    target = merged.pop("endpoint", None)
    kind = registry.claiming(target) if isinstance(target, str) else None
    if kind is None:
        raise EndpointNotFound(
            f"endpoint {reference!r} has no valid endpoint UUID (got {target!r})",
            f'set `endpoint = "<uuid>"` in [tool.hog.{name}] or endpoints.{name}.endpoint '
            f"(or a backend kind: {', '.join(registry.KINDS)})",
        )
    unused = tuple(sorted({*script_unused, *manifest_unused}))
    return ResolvedEndpoint(reference, kind.name, kind.endpoint_id(target), merged, unused)
