"""Manifest file -> RunSpec: schema first, then every check the schema cannot make.

All problems found are reported together (a ManifestErrors), each with its
file, line, key path and fix. The user's script is parsed, never executed.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

from ..backends import registry
from ..errors import (
    HogError,
    KeyPath,
    ManifestError,
    ManifestErrors,
    format_key_path,
    shorten,
    unreadable_file,
    unwritable_file,
)
from ..memory import parse_memory_mib
from ..retry_policy import RetryPolicy
from ..sweep import build_sweep
from ..type_names import Any
from .annotations import fix_for, type_name, with_article
from .endpoint_config import LOCAL, EndpointNotFound, resolve_endpoint
from .groundhog_compat import missing_groundhog
from .overrides import apply_overrides, parse_override
from .pep723 import ScriptMetadata, parse_script_metadata
from .schema import schema_errors
from .script_shape import defined_callables, find_function
from .spec import EnvironmentSpec, JobSpec, RunSpec
from .yaml_source import SourceMap, load_yaml_file, load_yaml_text

JOB_KEYS = (
    "script",
    "function",
    "endpoint",
    "endpoints",
    "config",
    "python",
    "python_downloads",
    "dependencies",
    "args",
    "kwargs",
    "sweep",
    "calls_per_task",
    "max_parallel",
    "retries",
    "timeout",
    "workdir",
    "memory",
)
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def load_manifest(
    path: str | Path,
    overrides: Sequence[str] = (),
    endpoint: str | None = None,
    text: str | None = None,
) -> RunSpec:
    """Load, validate and resolve a manifest. Raises ManifestErrors listing every problem.

    ``text`` replaces the file's content (a run's snapshot), paths staying relative to ``path``'s folder.
    """
    try:
        return _load_manifest(path, overrides, endpoint, text)
    except ManifestError as error:
        raise ManifestErrors.of([error]) from None


def _load_manifest(
    path: str | Path, overrides: Sequence[str], endpoint: str | None, text: str | None
) -> RunSpec:
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
        raise ManifestErrors.of(
            [
                source.error(
                    (),
                    f"a manifest is a mapping of keys, got a {type(raw).__name__}",
                    "start from an example: hog-batch ships configs/ with several",
                )
            ]
        )
    data, cli_config = apply_overrides(raw, parsed_overrides, JOB_KEYS)
    errors = schema_errors(data, source)
    if any(not error.key_path for error in errors):
        raise ManifestErrors.of(errors)
    broken = _set_aside(data, errors)
    loader = _ManifestChecks(manifest_path, data, source, cli_config, endpoint, broken)
    jobs = loader.jobs()
    output = loader.output()
    if errors or loader.errors:
        raise ManifestErrors.of(_from_command_line([*errors, *loader.errors], parsed_overrides))
    return RunSpec(
        name=data.get("name") or manifest_path.stem,
        manifest_path=manifest_path,
        manifest_text=text,
        overrides=list(overrides),
        data=data,
        jobs=jobs,
        output=output,
    )


def _from_command_line(errors: list[HogError], overrides: list) -> list[HogError]:
    """Errors in values given with --set (or -o) point at the command line, not at a line of the manifest.

    ``--set n=1,2`` (Hydra's habit) names no manifest key: the fix shows the sweep syntax.
    """
    for error in errors:
        override = next(
            (o for o in overrides if tuple(error.key_path[: len(o.path)]) == tuple(o.path)), None
        )
        if override is None:
            continue
        error.file, error.line = None, None
        error.message += " (a value given on the command line)"
        name, value = str(override.path[0]), override.text.partition("=")[2].strip()
        if (
            len(override.path) == 1
            and error.message.startswith("unknown key")
            and name.isidentifier()
        ):
            listed = value if value.startswith("[") else "[" + value + "]"
            error.hint = f"to sweep a parameter {name}: --set 'sweep.product.{name}={listed}'" + (
                f"; to give it one value in every call: --set 'kwargs.{name}={value}'"
                if "," not in value
                else ""
            )
    return errors


def _set_aside(data: dict[str, Any], errors: list[HogError]) -> set[KeyPath]:
    """Remove the keys that failed the schema, so the later checks can still run on the rest.

    Returns the keys removed (``("retries",)``, ``("jobs", 1, "sweep")``) or,
    for a job entry that is not a mapping, ``("jobs", i)``: the checks skip
    whatever depends on them instead of reporting a cascade.
    """
    broken: set[KeyPath] = set()
    for error in errors:
        path = tuple(error.key_path)
        place = path[:3] if path[0] == "jobs" else path[:1]
        broken.add(place)
    for place in broken:
        if len(place) == 1 and place != ("jobs",):
            data.pop(place[0], None)
        elif (
            len(place) == 3 and isinstance(data.get("jobs"), list) and place[1] < len(data["jobs"])
        ):
            entry = data["jobs"][place[1]]
            if isinstance(entry, dict):
                entry.pop(place[2], None)
    return broken


def _closest(name: str, candidates: list[str]) -> str | None:
    """The candidate ``name`` most likely misspells (ignoring case first), or None."""
    same_case = [c for c in candidates if c.lower() == name.lower()]
    import difflib  # only for a mistake: the did-you-mean

    close = same_case or difflib.get_close_matches(name, candidates, n=1)
    return close[0] if close else None


# ">=3.10", "<4", ">=3.10, <3.13", "==3.12.*": forms packaging always accepts, told without importing it
# (its import and its regular expressions cost a tenth of validate); anything else goes to packaging.
_PLAIN_CLAUSE = r"[ ]*(?:(?:>=|<=|>|<|==|!=)[ ]*[0-9]+(?:\.[0-9]+){0,3}|(?:==|!=)[ ]*[0-9]+(?:\.[0-9]+){0,2}\.\*)[ ]*"
_PLAIN_SPECIFIER = re.compile(rf"{_PLAIN_CLAUSE}(?:,{_PLAIN_CLAUSE})*")


def plainly_valid_python_specifier(text: object) -> bool:
    """Whether ``text`` is a Python version specifier of the plain forms (which packaging always accepts)."""
    return isinstance(text, str) and _PLAIN_SPECIFIER.fullmatch(text) is not None


def _requirement_name(requirement: str) -> str:
    match = _REQUIREMENT_NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


class _ManifestChecks:
    """The checks the schema cannot make, collecting every problem."""

    def __init__(
        self,
        manifest_path: Path,
        data: dict[str, Any],
        source: SourceMap,
        cli_config: dict[str, Any],
        endpoint_override: str | None,
        broken: set[KeyPath] = frozenset(),
    ) -> None:
        self.path, self.data, self.source = manifest_path, data, source
        self.base_dir = manifest_path.parent
        self.cli_config, self.endpoint_override = cli_config, endpoint_override
        self.broken = broken  # keys set aside after a schema error
        self.errors: list[HogError] = []
        self._scripts: dict[Path, tuple[str, ast.Module, ScriptMetadata] | None] = {}

    def locate(self, key_path: KeyPath, message: str, hint: str = "") -> ManifestError:
        return self.source.error(key_path, message, hint)

    def is_broken(self, at: KeyPath, key: str) -> bool:
        """Whether the job at ``at`` takes ``key`` from a place that failed the schema."""
        if at and (at in self.broken or (*at, key) in self.broken):
            return True
        return (key,) in self.broken and not (at and key in self._own(at))

    def jobs(self) -> list[JobSpec]:
        if ("jobs",) in self.broken:
            return []
        entries = self.data.get("jobs")
        if entries is None:
            top = {k: self.data[k] for k in JOB_KEYS if k in self.data}
            specs = [self.job(top, (), None)]
        else:
            entries = [
                entry if ("jobs", i) not in self.broken else None for i, entry in enumerate(entries)
            ]
            specs = [
                self.job(self._inherit(entry), ("jobs", i), entry.get("name"))
                for i, entry in enumerate(entries)
                if entry is not None
            ]
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries or []):
            if entry is None:
                continue
            name = entry.get("name") or entry.get("function") or self.data.get("function")
            if name in seen:
                self.errors.append(
                    self.locate(
                        ("jobs", i, "name"),
                        f"job name {name!r} is used twice (also by job {seen[name]})",
                        "give each job a unique name: with `name:`",
                    )
                )
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

    def _script(
        self, script: str, at: KeyPath
    ) -> tuple[Path, str, ast.Module, ScriptMetadata] | None:
        path = self.base_dir / script
        with contextlib.suppress(
            OSError, ValueError
        ):  # a name too long or with a NUL is reported as unreadable
            path = path.resolve()
        if path not in self._scripts:
            self._scripts[path] = self._read_script(path, at)
        found = self._scripts[path]
        return (path, *found) if found else None

    def _read_script(self, path: Path, at: KeyPath):
        problem = unreadable_file(path)
        if problem:
            self.errors.append(
                self.locate(
                    at,
                    f"script {problem}",
                    "paths in a manifest are relative to the manifest's folder",
                )
            )
            return None
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            self.errors.append(
                ManifestError(
                    message="script is not UTF-8 text", hint="save it as UTF-8", file=path
                )
            )
            return None
        except OSError as exc:
            self.errors.append(
                self.locate(
                    at,
                    f"cannot read the script {shorten(str(path))}: {exc.strerror}",
                    "check the file's permissions",
                )
            )
            return None
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as exc:
            self.errors.append(
                ManifestError(
                    message=f"script does not parse: {exc.msg}",
                    hint="fix the syntax error; hog-batch reads the script without running it",
                    file=path,
                    line=exc.lineno,
                )
            )
            return None
        except (RecursionError, MemoryError):
            self.errors.append(
                ManifestError(
                    message="script is nested too deeply for Python's parser",
                    hint="split the deepest expression into several statements",
                    file=path,
                )
            )
            return None
        try:
            metadata = parse_script_metadata(text, path)
        except ManifestError as exc:
            self.errors.append(exc)
            return None
        return text, tree, metadata

    def job(self, job: dict[str, Any], at: KeyPath, name: str | None) -> JobSpec | None:
        n_errors = len(self.errors)
        if self.is_broken(at, "script"):
            return None
        for key in ("script", "function"):
            if key not in job and not self.is_broken(at, key):
                self.errors.append(
                    self.locate(
                        at,
                        f"no {key} is given for this job",
                        f"add `{key}:` here or at the top of the manifest",
                    )
                )
        if n_errors != len(self.errors):
            return None
        function_known = "function" in job
        arguments_known = not any(self.is_broken(at, key) for key in ("args", "kwargs", "sweep"))
        script_at = (*at, "script") if "script" in self._own(at) else ("script",)
        function_at = (*at, "function") if "function" in self._own(at) else ("function",)
        found = self._script(job["script"], script_at)
        if found is None:
            return None
        script_path, text, tree, metadata = found
        shape = find_function(tree, job["function"]) if function_known else None
        if function_known and shape is None:
            candidates = defined_callables(tree)
            import difflib  # only for a mistake: the did-you-mean

            close = difflib.get_close_matches(job["function"], candidates, n=1, cutoff=0.5)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else (
                    f"functions defined there: {', '.join(candidates)}"
                    if candidates
                    else "define it at the top level of the script"
                )
            )
            self.errors.append(
                self.locate(
                    function_at, f"{script_path.name} defines no function {job['function']!r}", hint
                )
            )
        environment = self._environment(job, metadata, at, script_path)
        endpoint = None
        if not any(self.is_broken(at, key) for key in ("endpoint", "endpoints", "config")):
            endpoint = self._endpoint(job, metadata, at)
        sweep_at = (*at, "sweep") if "sweep" in self._own(at) else ("sweep",)
        sweep_errors: list[ManifestError] = []
        sweep = build_sweep(job.get("sweep"), self.base_dir, sweep_at, self.locate, sweep_errors)
        self.errors += sweep_errors
        n_calls = None
        if not sweep_errors and arguments_known:
            n_calls = sweep.count()
            if n_calls == 0:
                self.errors.append(
                    self.locate(
                        sweep_at,
                        "this sweep gives no calls" + sweep.why_empty(),
                        "give every swept parameter at least one value, and exclude fewer points",
                    )
                )
        if shape is not None and shape.signature is not None and arguments_known:
            keywords = list(dict.fromkeys([*job.get("kwargs", {}), *sweep.names]))
            parameters = shape.signature.names
            meant = {
                keyword: _closest(keyword, parameters)
                for keyword in keywords
                if keyword not in parameters
            }
            # A name that is evidently a misspelt parameter counts as given: one mistake, one error
            # ("has no parameter 'ofset'", not also "needs 'offset'"). A sweep with errors may lack
            # names it means to give: no "needs" error at all then.
            given = [*keywords, *(name for name in meant.values() if name)]
            for keyword, problem in shape.signature.problems(
                len(job.get("args", [])), given, check_missing=not sweep_errors
            ):
                if keyword is not None and keyword not in keywords:
                    continue
                where = (
                    function_at
                    if keyword is None
                    else self._keyword_origin(keyword, job, sweep, at, function_at)
                )
                close = meant.get(keyword) if keyword else None
                hint = (
                    (f"did you mean {close!r}? " if close else "")
                    + f"its parameters are ({', '.join(parameters)}), defined at {script_path.name}:{shape.line}"
                )
                self.errors.append(self.locate(where, f"{job['function']}() {problem}", hint))
        if arguments_known:
            for keyword in job.get("kwargs", {}):
                swept_at = sweep.origin(keyword)
                if swept_at is not None:
                    kwargs_at = (
                        (*at, "kwargs", keyword)
                        if keyword in self._own(at).get("kwargs", {})
                        else ("kwargs", keyword)
                    )
                    self.errors.append(
                        self.locate(
                            kwargs_at,
                            f"{keyword!r} is given under kwargs and swept at "
                            f"{format_key_path(swept_at)}: the swept values would replace this "
                            "one in every call",
                            "keep one of them: a fixed value under kwargs, "
                            "or the values to try under sweep",
                        )
                    )
        if (
            shape is not None
            and shape.signature is not None
            and shape.signature.annotations
            and arguments_known
            and not sweep_errors
        ):
            self._check_annotations(
                job, sweep, shape.signature, at, f"{script_path.name}:{shape.line}"
            )
        if not self.is_broken(at, "dependencies"):
            self._check_chunk_dependencies(sweep, environment)
            groundhog = missing_groundhog(tree, environment.dependencies, script_path, script_at)
            if groundhog is not None:
                self.errors.append(groundhog)
        timeout = job.get("timeout")
        if isinstance(timeout, float) and math.isnan(timeout):
            where = (*at, "timeout") if "timeout" in self._own(at) else ("timeout",)
            self.errors.append(
                self.locate(
                    where,
                    "timeout is not a number (nan)",
                    "give seconds per call, e.g. timeout: 600, or leave timeout out for no limit",
                )
            )
        if len(self.errors) != n_errors or endpoint is None or not function_known:
            return None
        kind = registry.kind(endpoint.kind)
        spec = JobSpec(
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
            max_parallel=job.get("max_parallel", kind.limits(endpoint.config).default_parallelism),
            retries=RetryPolicy.of(job.get("retries", 0)),
            timeout_s=job.get("timeout"),
            n_calls=n_calls if n_calls is not None else sweep.count(),
            workdir=job.get("workdir"),
            memory_mib=parse_memory_mib(job.get("memory")),
        )
        problems = kind.config_problems(
            spec, self._config_locator(endpoint.reference, at, script_path)
        )
        self.errors += problems
        return None if problems else spec

    def _config_locator(self, reference: str, at: KeyPath, script_path: Path):
        """locate(key, message, hint): the error at the line that sets the endpoint config key, highest layer first
        (--set, the job's config, the top-level config, the endpoint table and its variants, deepest first), else
        at the script's [tool.hog.NAME] table."""
        name, *variants = reference.split(".")

        def locate(key: str, message: str, hint: str) -> HogError:
            if key in self.cli_config:
                return ManifestError(message=f"--set config.{key}: {message}", hint=hint)
            candidates = [(*at, "config", key)] if at else []
            candidates.append(("config", key))
            for depth in range(len(variants), -1, -1):
                table = (name, *variants[:depth], key)
                candidates += (
                    [(*at, "endpoints", *table), ("endpoints", *table)]
                    if at
                    else [("endpoints", *table)]
                )
            for path in candidates:
                if path in self.source.lines:
                    return self.locate(path, message, hint)
            return ManifestError(
                message=message, hint=hint, file=script_path, key_path=("tool", "hog", name, key)
            )

        return locate

    def output(self) -> Path | None:
        """The export path of ``output:`` (or ``-o``), checked writable before any call runs."""
        output = self.data.get("output")
        if not output:
            return None
        unknown = [
            name
            for name in re.findall(r"\{([^{}]*)\}", str(output))
            if name not in ("run", "timestamp")
        ]
        if unknown:
            self.errors.append(
                self.locate(
                    ("output",),
                    f"output {shorten(output)!r} has an unknown placeholder "
                    f"{{{shorten(unknown[0], 40)}}}",
                    "the placeholders are {run} and {timestamp}",
                )
            )
            return None
        path = self.base_dir / output
        try:
            path = path.resolve()
        except (OSError, ValueError) as exc:
            self.errors.append(
                self.locate(
                    ("output",),
                    f"output {shorten(output)!r} is not a usable path: {exc}",
                    "name a file such as results.csv",
                )
            )
            return None
        problem = unwritable_file(path)
        if problem:
            self.errors.append(
                self.locate(
                    ("output",),
                    f"output {problem}",
                    "name a file in an existing folder, such as results.csv",
                )
            )
            return None
        return path

    def _check_annotations(
        self, job: dict[str, Any], sweep, signature, at: KeyPath, defined_at: str
    ) -> None:
        """Every value the calls receive (args, kwargs, swept values, rows) fits its parameter's plain annotation."""
        given: list[tuple[str, KeyPath, int | None, Any]] = []
        args_at = (*at, "args") if "args" in self._own(at) else ("args",)
        for i, (name, value) in enumerate(
            zip(signature.positional, job.get("args", []), strict=False)
        ):
            given.append((name, (*args_at, i), None, value))
        for name, value in job.get("kwargs", {}).items():
            given.append((name, self._keyword_origin(name, job, sweep, at, ()), None, value))
        wrong: set[str] = set()
        for name, where, row, value in [*given, *sweep.passed_values()]:
            annotation = signature.annotation(name)
            if name in wrong or annotation is None or annotation.accepts(value):
                continue
            wrong.add(name)
            in_rows = row is not None
            place = (*where, "file") if in_rows else where
            what = (
                f"row {row + 1} of the rows file gives {name}="
                if in_rows
                else f"{format_key_path(where)} gives "
            )
            fix = fix_for(value, annotation, format_key_path(where))
            if in_rows:
                fix = (
                    f"correct the file: a column with any text in it is read as text (the column {name!r})"
                    if isinstance(value, str) and annotation.kinds & {"int", "float"}
                    else f"correct the file, or the annotation: {fix}"
                )
            self.errors.append(
                self.locate(
                    place,
                    f"{job['function']}() takes {name}: {annotation.text} "
                    f"({defined_at}), but {what}{shorten(repr(value), 80)}, "
                    f"{with_article(type_name(value))}",
                    fix,
                )
            )

    def _keyword_origin(
        self, keyword: str, job: dict[str, Any], sweep, at: KeyPath, fallback: KeyPath
    ) -> KeyPath:
        """Where the manifest gives the keyword argument ``keyword``: its sweep key, or its kwargs key."""
        swept = sweep.origin(keyword)
        if swept is not None:
            return swept
        if keyword in job.get("kwargs", {}):
            return (
                (*at, "kwargs", keyword)
                if keyword in self._own(at).get("kwargs", {})
                else ("kwargs", keyword)
            )
        return fallback

    def _own(self, at: KeyPath) -> dict[str, Any]:
        """The keys written in the job entry itself (not inherited)."""
        if not at:
            return self.data
        return self.data["jobs"][at[1]]

    def _environment(
        self, job: dict[str, Any], metadata: ScriptMetadata, at: KeyPath, script_path: Path
    ) -> EnvironmentSpec:
        python = job.get("python", metadata.requires_python)
        if python is not None and not plainly_valid_python_specifier(python):
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(python)
            except InvalidSpecifier:
                where = (*at, "python") if "python" in self._own(at) else ("python",)
                if "python" in job:
                    self.errors.append(
                        self.locate(
                            where,
                            f"{python!r} is not a Python version specifier",
                            'write e.g. ">=3.11" or "==3.12.*"',
                        )
                    )
                else:
                    self.errors.append(
                        ManifestError(
                            message=f"requires-python {python!r} is not a version specifier",
                            hint='write e.g. requires-python = ">=3.11"',
                            file=script_path,
                            line=metadata.block_line,
                        )
                    )
        manifest_deps = list(job.get("dependencies", []))
        if (
            manifest_deps or metadata.dependencies
        ):  # packaging's requirement parser costs as much as the rest of validate
            from packaging.requirements import InvalidRequirement, Requirement
        for i, requirement in enumerate(manifest_deps):
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                self.errors.append(
                    self.locate(
                        ("dependencies", i) if not at else (*at, "dependencies"),
                        f"{requirement!r} is not a valid requirement: {exc}",
                        'write e.g. "numpy>=2" (PEP 508)',
                    )
                )
        for requirement in metadata.dependencies:
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                self.errors.append(
                    ManifestError(
                        message=f"dependency {requirement!r} is not a valid requirement: {exc}",
                        hint='write e.g. "numpy>=2" (PEP 508)',
                        file=script_path,
                        line=metadata.block_line,
                    )
                )
        dependencies = tuple(dict.fromkeys([*metadata.dependencies, *manifest_deps]))
        return EnvironmentSpec(
            requires_python=python,
            dependencies=dependencies,
            tool_uv=metadata.tool_uv,
            python_downloads=job.get("python_downloads") is True,
        )

    def _endpoint(self, job: dict[str, Any], metadata: ScriptMetadata, at: KeyPath):
        reference = self.endpoint_override or job.get("endpoint", LOCAL)
        where = (*at, "endpoint") if "endpoint" in self._own(at) else ("endpoint",)
        try:
            return resolve_endpoint(
                reference,
                metadata.tool_hog,
                job.get("endpoints", {}),
                self.data.get("config", {}),
                job.get("config", {}) if at else {},
                self.cli_config,
            )
        except EndpointNotFound as exc:
            if self.endpoint_override:
                self.errors.append(
                    ManifestError(message=f"--endpoint: {exc.message}", hint=exc.hint)
                )
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
                self.errors.append(
                    self.locate(
                        (*source.key_path, "file"),
                        f"chunks of {source.file.name} arrive as {kind}, but {needed} is not among the dependencies",
                        f"add {needed} to the script's dependencies or to the manifest's `dependencies:`, or use pass: path",
                    )
                )
