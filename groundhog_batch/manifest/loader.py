"""Manifest file -> RunSpec: schema first, then every check the schema cannot make.

All problems found are reported together (a ManifestErrors), each with its
file, line, key path and fix. The user's script is parsed, never executed.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import HogError, KeyPath, ManifestError, ManifestErrors
from ..sweep import build_sweep
from .endpoint_config import LOCAL, EndpointNotFound, resolve_endpoint
from .overrides import apply_overrides, parse_override
from .pep723 import ScriptMetadata, parse_script_metadata
from .schema import schema_errors
from .script_shape import defined_callables, find_function
from .spec import EnvironmentSpec, JobSpec, RunSpec
from .yaml_source import SourceMap, load_yaml_file, load_yaml_text

JOB_KEYS = ("script", "function", "endpoint", "endpoints", "config", "python", "dependencies", "args",
            "kwargs", "sweep", "calls_per_task", "max_parallel", "retries", "timeout")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


REMOTE_DEFAULT_MAX_PARALLEL = 64  # tasks in flight on a Globus Compute endpoint


def default_parallelism() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_manifest(path: str | Path, overrides: Sequence[str] = (), endpoint: str | None = None,
                  text: str | None = None) -> RunSpec:
    """Load, validate and resolve a manifest. Raises ManifestErrors listing every problem.

    ``text`` replaces the file's content (a run's snapshot), paths staying relative to ``path``'s folder.
    """
    try:
        return _load_manifest(path, overrides, endpoint, text)
    except ManifestError as error:
        raise ManifestErrors.of([error]) from None


def _load_manifest(path: str | Path, overrides: Sequence[str], endpoint: str | None, text: str | None) -> RunSpec:
    manifest_path = Path(path).absolute()
    if text is None:
        raw, source = load_yaml_file(manifest_path)
        text = manifest_path.read_text("utf-8")
    else:
        raw, source = load_yaml_text(text, manifest_path)
    parsed_overrides = [parse_override(text) for text in overrides]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ManifestErrors.of([source.error((), f"a manifest is a mapping of keys, got a {type(raw).__name__}",
                                              "start from an example: hog-batch ships configs/ with several")])
    data, cli_config = apply_overrides(raw, parsed_overrides)
    errors = schema_errors(data, source)
    if errors:
        raise ManifestErrors.of(errors)
    loader = _ManifestChecks(manifest_path, data, source, cli_config, endpoint)
    jobs = loader.jobs()
    if loader.errors:
        raise ManifestErrors.of(loader.errors)
    output = data.get("output")
    return RunSpec(
        name=data.get("name") or manifest_path.stem,
        manifest_path=manifest_path,
        manifest_text=text,
        overrides=list(overrides),
        data=data,
        jobs=jobs,
        output=(manifest_path.parent / output).resolve() if output else None,
    )


def _requirement_name(requirement: str) -> str:
    match = _REQUIREMENT_NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


class _ManifestChecks:
    """The checks the schema cannot make, collecting every problem."""

    def __init__(self, manifest_path: Path, data: dict[str, Any], source: SourceMap,
                 cli_config: dict[str, Any], endpoint_override: str | None) -> None:
        self.path, self.data, self.source = manifest_path, data, source
        self.base_dir = manifest_path.parent
        self.cli_config, self.endpoint_override = cli_config, endpoint_override
        self.errors: list[HogError] = []
        self._scripts: dict[Path, tuple[str, ast.Module, ScriptMetadata] | None] = {}

    def locate(self, key_path: KeyPath, message: str, hint: str = "") -> ManifestError:
        return self.source.error(key_path, message, hint)

    def jobs(self) -> list[JobSpec]:
        entries = self.data.get("jobs")
        if entries is None:
            top = {k: self.data[k] for k in JOB_KEYS if k in self.data}
            specs = [self.job(top, (), None)]
        else:
            specs = [self.job(self._inherit(entry), ("jobs", i), entry.get("name")) for i, entry in enumerate(entries)]
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries or []):
            name = entry.get("name") or entry.get("function") or self.data.get("function")
            if name in seen:
                self.errors.append(self.locate(("jobs", i, "name"), f"job name {name!r} is used twice (also by job {seen[name]})",
                                               "give each job a unique name: with `name:`"))
            seen.setdefault(name, i)
        return [s for s in specs if s is not None]

    def _inherit(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A job's keys, with the manifest's top-level keys as defaults."""
        job = {k: self.data[k] for k in JOB_KEYS if k in self.data}
        job.update({k: v for k, v in entry.items() if k != "name"})
        job["endpoints"] = {**self.data.get("endpoints", {}), **entry.get("endpoints", {})}
        job["kwargs"] = {**self.data.get("kwargs", {}), **entry.get("kwargs", {})}
        job["dependencies"] = [*self.data.get("dependencies", []), *entry.get("dependencies", [])]
        job["config"] = entry.get("config", {})
        return job

    def _script(self, script: str, at: KeyPath) -> tuple[Path, str, ast.Module, ScriptMetadata] | None:
        path = (self.base_dir / script).resolve()
        if path not in self._scripts:
            self._scripts[path] = self._read_script(path, at)
        found = self._scripts[path]
        return (path, *found) if found else None

    def _read_script(self, path: Path, at: KeyPath):
        if not path.is_file():
            self.errors.append(self.locate(at, f"script not found: {path}", "paths in a manifest are relative to the manifest's folder"))
            return None
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            self.errors.append(ManifestError(message="script is not UTF-8 text", hint="save it as UTF-8", file=path))
            return None
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as exc:
            self.errors.append(ManifestError(message=f"script does not parse: {exc.msg}", hint="fix the syntax error; hog-batch reads the script without running it",
                                             file=path, line=exc.lineno))
            return None
        try:
            metadata = parse_script_metadata(text, path)
        except ManifestError as exc:
            self.errors.append(exc)
            return None
        return text, tree, metadata

    def job(self, job: dict[str, Any], at: KeyPath, name: str | None) -> JobSpec | None:
        n_errors = len(self.errors)
        for key in ("script", "function"):
            if key not in job:
                self.errors.append(self.locate(at, f"no {key} is given for this job",
                                               f"add `{key}:` here or at the top of the manifest"))
        if n_errors != len(self.errors):
            return None
        script_at = (*at, "script") if "script" in self._own(at) else ("script",)
        function_at = (*at, "function") if "function" in self._own(at) else ("function",)
        found = self._script(job["script"], script_at)
        if found is None:
            return None
        script_path, text, tree, metadata = found
        shape = find_function(tree, job["function"])
        if shape is None:
            candidates = defined_callables(tree)
            close = difflib.get_close_matches(job["function"], candidates, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else (f"functions defined there: {', '.join(candidates)}" if candidates else "define it at the top level of the script")
            self.errors.append(self.locate(function_at, f"{script_path.name} defines no function {job['function']!r}", hint))
        environment = self._environment(job, metadata, at, script_path)
        endpoint = self._endpoint(job, metadata, at)
        sweep_at = (*at, "sweep") if "sweep" in self._own(at) else ("sweep",)
        sweep_errors: list[ManifestError] = []
        sweep = build_sweep(job.get("sweep"), self.base_dir, sweep_at, self.locate, sweep_errors)
        self.errors += sweep_errors
        if shape is not None and shape.signature is not None:
            keywords = list(dict.fromkeys([*job.get("kwargs", {}), *sweep.names]))
            parameters = shape.signature.names
            for keyword, problem in shape.signature.problems(len(job.get("args", [])), keywords):
                where = function_at if keyword is None else self._keyword_origin(keyword, job, sweep, at, function_at)
                close = difflib.get_close_matches(keyword, parameters, n=1) if keyword else []
                hint = (f"did you mean {close[0]!r}? " if close else "") + \
                    f"its parameters are ({', '.join(parameters)}), defined at {script_path.name}:{shape.line}"
                self.errors.append(self.locate(where, f"{job['function']}() {problem}", hint))
        self._check_chunk_dependencies(sweep, environment)
        if len(self.errors) != n_errors:
            return None
        return JobSpec(
            name=name or job["function"],
            script_path=script_path,
            script_text=text,
            script_sha256=hashlib.sha256(text.encode()).hexdigest(),
            function=job["function"],
            signature=shape.signature if shape else None,
            environment=environment,
            endpoint=endpoint,
            args=list(job.get("args", [])),
            kwargs=dict(job.get("kwargs", {})),
            sweep=sweep,
            calls_per_task=job.get("calls_per_task", "auto"),
            max_parallel=job.get("max_parallel", default_parallelism() if endpoint.is_local else REMOTE_DEFAULT_MAX_PARALLEL),
            retries=job.get("retries", 0),
            timeout_s=job.get("timeout"),
            n_calls=sweep.count(),
        )

    def _keyword_origin(self, keyword: str, job: dict[str, Any], sweep, at: KeyPath, fallback: KeyPath) -> KeyPath:
        """Where the manifest gives the keyword argument ``keyword``: its sweep key, or its kwargs key."""
        swept = sweep.origin(keyword)
        if swept is not None:
            return swept
        if keyword in job.get("kwargs", {}):
            return (*at, "kwargs", keyword) if keyword in self._own(at).get("kwargs", {}) else ("kwargs", keyword)
        return fallback

    def _own(self, at: KeyPath) -> dict[str, Any]:
        """The keys written in the job entry itself (not inherited)."""
        if not at:
            return self.data
        return self.data["jobs"][at[1]]

    def _environment(self, job: dict[str, Any], metadata: ScriptMetadata, at: KeyPath, script_path: Path) -> EnvironmentSpec:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        python = job.get("python", metadata.requires_python)
        if python is not None:
            try:
                SpecifierSet(python)
            except InvalidSpecifier:
                where = (*at, "python") if "python" in self._own(at) else ("python",)
                if "python" in job:
                    self.errors.append(self.locate(where, f"{python!r} is not a Python version specifier", 'write e.g. ">=3.11" or "==3.12.*"'))
                else:
                    self.errors.append(ManifestError(message=f"requires-python {python!r} is not a version specifier",
                                                     hint='write e.g. requires-python = ">=3.11"', file=script_path, line=metadata.block_line))
        manifest_deps = list(job.get("dependencies", []))
        for i, requirement in enumerate(manifest_deps):
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                self.errors.append(self.locate(("dependencies", i) if not at else (*at, "dependencies"),
                                               f"{requirement!r} is not a valid requirement: {exc}", 'write e.g. "numpy>=2" (PEP 508)'))
        for requirement in metadata.dependencies:
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                self.errors.append(ManifestError(message=f"dependency {requirement!r} is not a valid requirement: {exc}",
                                                 hint='write e.g. "numpy>=2" (PEP 508)', file=script_path, line=metadata.block_line))
        dependencies = tuple(dict.fromkeys([*metadata.dependencies, *manifest_deps]))
        return EnvironmentSpec(requires_python=python, dependencies=dependencies, tool_uv=metadata.tool_uv)

    def _endpoint(self, job: dict[str, Any], metadata: ScriptMetadata, at: KeyPath):
        reference = self.endpoint_override or job.get("endpoint", LOCAL)
        where = (*at, "endpoint") if "endpoint" in self._own(at) else ("endpoint",)
        try:
            return resolve_endpoint(reference, metadata.tool_hog, job.get("endpoints", {}),
                                    self.data.get("config", {}), job.get("config", {}) if at else {}, self.cli_config)
        except EndpointNotFound as exc:
            if self.endpoint_override:
                self.errors.append(ManifestError(message=f"--endpoint: {exc.message}", hint=exc.hint))
            else:
                self.errors.append(self.locate(where, exc.message, exc.hint))
            return None

    def _check_chunk_dependencies(self, sweep, environment: EnvironmentSpec) -> None:
        names = {_requirement_name(d) for d in environment.dependencies}
        for source in sweep.chunk_sources.values():
            if source.file is None or source.pass_as != "value":
                continue
            needed = "numpy" if source.file.suffix.lower() == ".npy" else "pandas"
            if needed not in names:
                kind = "NumPy arrays" if needed == "numpy" else "pandas DataFrames"
                self.errors.append(self.locate((*source.key_path, "file"),
                                               f"chunks of {source.file.name} arrive as {kind}, but {needed} is not among the dependencies",
                                               f"add {needed} to the script's dependencies or to the manifest's `dependencies:`, or use pass: path"))
