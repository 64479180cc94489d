"""A manifest written in Python: a dict, or ``sweep(...)`` with keyword arguments.

It becomes YAML text and goes through the same loader as a file (the same
schema, the same checks), so a run submitted from a notebook keeps its
manifest in the run directory like any other and resumes from the CLI. Paths
in it are relative to the folder it was made in (the current one). Its
errors carry no line number: they name the key (``sweep.product.n``) or, for
``sweep(...)``, the keyword argument (``product['n']``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HogError, KeyPath, ManifestErrors
from .manifest import RunSpec, load_manifest

_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Manifest:
    """A manifest held in memory: its data, the folder its paths are relative to, and how errors name its keys."""

    data: dict[str, Any]
    base_dir: Path = field(default_factory=Path.cwd)
    origin: str = "manifest"  # how errors name where they are: "manifest" (a dict) or "hb.sweep()"
    keywords: dict[KeyPath, KeyPath] = field(
        default_factory=dict
    )  # manifest key path prefix -> keyword path

    @property
    def name(self) -> str:
        name = self.data.get("name") or self.data.get(
            "function"
        )  # a one-job manifest is named after its function
        return _NAME.sub("_", name) if isinstance(name, str) and name else "notebook"

    @property
    def path(self) -> Path:
        """Where the manifest would be as a file: the run records it, and resolves relative paths from its folder."""
        return self.base_dir.absolute() / f"{self.name}.yaml"

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(
            self.data, sort_keys=False, default_flow_style=None, allow_unicode=True
        )

    def save(self, path: str | Path) -> Path:
        """Write it as a manifest file (its relative paths stay relative to ``base_dir``: save it there)."""
        target = Path(path)
        target.write_text(self.to_yaml(), "utf-8")
        return target

    def spec(self, overrides: Sequence[str] = (), endpoint: str | None = None) -> RunSpec:
        """Validate and resolve it, as ``load_manifest`` does a file; errors name the keys (or keywords)."""
        try:
            return load_manifest(self.path, overrides, endpoint, text=self.to_yaml())
        except ManifestErrors as errors:
            for error in errors.errors:
                self._relocate(error)
            raise

    def _relocate(self, error: HogError) -> None:
        if (
            error.file is None and error.line is None
        ):  # a --set value: it already names the command line
            return
        error.file, error.line = self.origin, None
        path = tuple(error.key_path)
        for prefix in sorted(self.keywords, key=len, reverse=True):
            if path[: len(prefix)] == prefix:
                error.key_path = (*self.keywords[prefix], *path[len(prefix) :])
                return


def as_manifest(value: dict[str, Any] | Manifest) -> Manifest:
    return value if isinstance(value, Manifest) else Manifest(dict(value))


_SWEEP_KINDS = ("product", "zip", "rows", "chunks", "exclude")


def sweep(
    script: str | Path,
    function: str,
    *,
    product: dict[str, Any] | None = None,
    zip: dict[str, Any] | None = None,
    rows: Any = None,
    chunks: dict[str, Any] | None = None,
    exclude: list | None = None,
    endpoint: str | None = None,
    name: str | None = None,
    kwargs: dict[str, Any] | None = None,
    args: list | None = None,
    **settings: Any,
) -> Manifest:
    """Build and validate a one-job manifest: ``hb.sweep("fit.py", "fit", product={"omega0": [1, 2]})``.

    ``product``, ``zip``, ``rows``, ``chunks`` and ``exclude`` are the manifest's
    ``sweep:`` groups; ``settings`` are its other keys (``timeout``, ``retries``,
    ``calls_per_task``, ``max_parallel``, ``output``, ``dependencies``, ...).
    A mistake raises ``ManifestErrors`` naming the keyword, e.g. ``product['n']``.
    Pass the result to ``hb.submit``; ``.to_yaml()`` shows it as a manifest file.
    """
    data: dict[str, Any] = {}
    data["name"] = name or function
    data["script"] = str(script)
    data["function"] = function
    if endpoint is not None:
        data["endpoint"] = endpoint
    if args is not None:
        data["args"] = args
    if kwargs is not None:
        data["kwargs"] = kwargs
    groups = {"product": product, "zip": zip, "rows": rows, "chunks": chunks, "exclude": exclude}
    swept = {kind: value for kind, value in groups.items() if value is not None}
    if swept:
        data["sweep"] = swept
    data.update(settings)
    keywords: dict[KeyPath, KeyPath] = {("sweep", kind): (kind,) for kind in _SWEEP_KINDS}
    keywords[("sweep",)] = ("product",)
    manifest = Manifest(data, origin="hb.sweep()", keywords=keywords)
    manifest.spec()  # every mistake now, naming the keyword, before anything runs
    return manifest


__all__ = ["Manifest", "as_manifest", "sweep"]
