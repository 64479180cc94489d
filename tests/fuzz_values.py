"""A seeded fuzz generator over parameter values, names and types, and the oracle that judges each case.

Unlike ``test_fuzz_cli`` (hostile manifest *structure*), this one makes
manifests that are mostly well formed and varies what flows through them:

- **names** of swept parameters: the table's own columns (``status``,
  ``result``, ``cpu_s``...), keywords, dunders, non-ASCII identifiers, names
  with dots or dashes, very long ones, from a manifest or a rows file's header;
- **values**: YAML dates and timestamps, big and odd numbers (2**63, NaN,
  -0.0), text that looks like numbers or lists (``'1000,2000'``), lone
  surrogates, nested lists and mappings, and Parquet columns of decimals,
  lists, dates and timestamps;
- **types**: the function's annotations (``int``, ``Optional[str]``,
  ``Literal``, unions, strings, ``from __future__ import annotations``, types
  hog-batch does not check).

Each case drives ``validate`` and ``plan`` and, when asked, ``submit -o``,
``collect -o`` to every format and ``report``, and its oracle checks what the
user would see: no traceback, no hang, exit codes in the contract, and an
exported table that keeps one meaning per column (unique names, a valid
``status`` in every row, every swept parameter in its own column, the value
each call received of a plain Python type).

Run it alone for figures: ``python tests/fuzz_values.py --cases 2000 --submit 100``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RESERVED = [
    "job",
    "call",
    "status",
    "result",
    "error",
    "traceback",
    "stdout",
    "stderr",
    "attempts",
    "duration_s",
    "started_at",
    "finished_at",
    "cpu_s",
    "max_rss_mib",
    "script_sha256",
    "files",
]
ODD_NAMES = [
    "class",
    "lambda",
    "None",
    "__init__",
    "__class__",
    "self",
    "ñame",
    "λ",
    "x1",
    "_",
    "_x",
    "a-b",
    "a.b",
    "result.x",
    "param:x",
    "2x",
    "a b",
    "x" * 300,
    "Status",
    "RESULT",
    "jobs",
    "sweep",
    "kwargs",
]
PLAIN_NAMES = ["x", "n", "seed", "lr", "mode", "day", "tag", "alpha", "beta", "data_path"]

YAML_VALUES = [
    "0",
    "1",
    "-1",
    "2024-01-31",
    "2024-02-30",
    "2024-01-31T10:00:00",
    "2024-01-31 10:00:00Z",
    "9223372036854775808",
    "100000000000000000000",
    "-0.0",
    ".nan",
    ".inf",
    "-.inf",
    "1e-300",
    "0.05",
    "'0.05'",
    "'1000,2000'",
    "1000,2000",
    "''",
    "'x'",
    "null",
    "~",
    "true",
    "no",
    "'yes'",
    "[]",
    "[1, 2]",
    "[[1], [2, 3]]",
    "{a: 1}",
    "{a: [1, {b: 2}]}",
    '"caf\\uDCE9"',
    '"\\u00e9t\\u00e9"',
    '"tab\\there"',
    "'; echo pwned'",
    "'{x}'",
    "0x1f",
    "0o17",
    "1_000",
    "'2024-01-31'",
]
ANNOTATIONS = [
    "",
    ": int",
    ": float",
    ": str",
    ": bool",
    ": list",
    ": dict",
    ": list[int]",
    ": dict[str, int]",
    ": Optional[int]",
    ": Optional[str]",
    ": int | None",
    ": 'float'",
    ': "int | str"',
    ": Literal['a', 'b', 1]",
    ": Union[int, str]",
    ": datetime.date",
    ": 'np.ndarray'",
    ": Any",
    ": None",
]
FORMATS = [".csv", ".tsv", ".parquet", ".json", ".jsonl"]
STATES = {"succeeded", "failed", "cancelled", "pending"}
HEAD = '# /// script\n# requires-python = ">=3.10"\n# dependencies = []\n# ///\n'


@dataclass
class Case:
    number: int
    names: list[str]
    manifest: str
    script: str
    files: dict[str, bytes] = field(default_factory=dict)
    described: str = ""
    swept: list[str] = field(default_factory=list)  # the names that are table columns (not kwargs)


def random_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(RESERVED)
    if roll < 0.5:
        return rng.choice(ODD_NAMES)
    return rng.choice(PLAIN_NAMES)


def _yaml_key(name: str) -> str:
    return json.dumps(name)  # always a valid YAML key, whatever the name holds


def random_values(rng: random.Random, k: int) -> list[str]:
    return [rng.choice(YAML_VALUES) for _ in range(k)]


def _script(names: list[str], rng: random.Random) -> str:
    """A function taking ``names`` (when they are identifiers), annotated at random, returning what it received."""
    usable = [
        n
        for n in dict.fromkeys(names)
        if n.isidentifier()
        and not _keyword(n)
        and n not in ("kwargs", "got", "sys", "datetime", "Any", "Literal", "Optional", "Union")
    ]
    annotated = rng.random() < 0.5
    params = [
        f"{n}{rng.choice(ANNOTATIONS) if annotated else ''}"
        + (" = None" if rng.random() < 0.3 else "")
        for n in usable
    ]
    params.sort(key=lambda p: "=" in p)  # defaults last
    future = "from __future__ import annotations\n" if rng.random() < 0.3 else ""
    body = (
        "    import sys\n"
        "    got = {k: [type(v).__module__, type(v).__name__, repr(v)[:60]] for k, v in kwargs.items()}\n"
        "    got.update({k: [type(v).__module__, type(v).__name__, repr(v)[:60]] for k, v in locals().items()\n"
        "                if k not in ('kwargs', 'got', 'sys')})\n"
        "    got['numpy_loaded'] = 'numpy' in sys.modules\n"
        "    return got\n"
    )
    return (
        HEAD
        + future
        + "import datetime\nfrom typing import Any, Literal, Optional, Union\n"
        + f"def work({', '.join([*params, '**kwargs'])}):\n"
        + body
    )


def _keyword(name: str) -> bool:
    import keyword

    return keyword.iskeyword(name)


def make_case(number: int, rng: random.Random) -> Case:
    """One manifest (and its script and files), with names, values and types drawn at random."""
    names = list(dict.fromkeys(random_name(rng) for _ in range(rng.randint(1, 3))))
    files: dict[str, bytes] = {}
    group = rng.choice(["product", "product", "zip", "rows_csv", "rows_parquet", "kwargs"])
    lines = ["script: f.py", "function: work"]
    if group == "product":
        lines += ["sweep:", "  product:"] + [
            f"    {_yaml_key(n)}: [{', '.join(random_values(rng, rng.randint(1, 3)))}]"
            for n in names
        ]
    elif group == "zip":
        k = rng.randint(1, 3)
        lines += ["sweep:", "  zip:"] + [
            f"    {_yaml_key(n)}: [{', '.join(random_values(rng, k))}]" for n in names
        ]
    elif group == "kwargs":
        lines += ["kwargs:"] + [f"  {_yaml_key(n)}: {rng.choice(YAML_VALUES)}" for n in names]
        swept = rng.choice(PLAIN_NAMES)
        lines += ["sweep:", "  product:", f"    {_yaml_key(swept)}: [1]"]
        return Case(
            number,
            [*names, swept],
            "\n".join(lines) + "\n",
            _script([*names, swept], rng),
            files,
            group,
            [swept],
        )
    elif group == "rows_csv":
        cells = [
            "1",
            "2.5",
            "",
            "x",
            "2024-01-31",
            "1,2",
            '"a,b"',
            "nan",
            "True",
            "9" * 25,
            "caf\xe9",
        ]
        rows = [",".join(rng.choice(cells) for _ in names) for _ in range(rng.randint(1, 3))]
        files["p.csv"] = (",".join(names) + "\n" + "\n".join(rows) + "\n").encode(
            "utf-8", "surrogateescape"
        )
        lines += ["sweep:", "  rows: {file: p.csv}"]
    else:
        files["p.parquet"] = _parquet(names, rng)
        lines += ["sweep:", "  rows: {file: p.parquet}"]
    return Case(number, names, "\n".join(lines) + "\n", _script(names, rng), files, group, names)


def _parquet(names: list[str], rng: random.Random) -> bytes:
    import datetime
    import decimal
    import io

    import pandas as pd

    n_rows = rng.randint(1, 3)
    makers = [
        lambda i: decimal.Decimal(f"{i}.{rng.randint(0, 99):02d}"),
        lambda i: [i, i + 1][: rng.randint(0, 2)],
        lambda i: datetime.date(2024, 1, 1 + i),
        lambda i: pd.Timestamp("2024-01-01 12:00") + pd.Timedelta(hours=i),
        lambda i: {"a": i},
        lambda i: i * 1.5,
        lambda i: f"s{i}",
        lambda i: bool(i % 2),
        lambda i: 2**62 + i,
    ]
    columns = {}
    for name in names:
        make = rng.choice(makers)
        columns[name] = [make(i) for i in range(n_rows)]
    buffer = io.BytesIO()
    try:
        pd.DataFrame(columns).to_parquet(buffer)
    except Exception:  # a column pyarrow cannot store (mixed kinds): make it text
        pd.DataFrame({k: [str(v) for v in vs] for k, vs in columns.items()}).to_parquet(buffer)
    return buffer.getvalue()


# --- the oracle -----------------------------------------------------------------------------


@dataclass
class Outcome:
    case: int
    step: str
    problem: str  # "traceback", "hang", "exit N", "table: ..."
    detail: str = ""


def run_cli(folder: Path, *args: str, timeout: float) -> subprocess.CompletedProcess | None:
    """The real CLI in its own process; None when it outlived ``timeout`` (a hang)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "groundhog_batch", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None


class _Hang(Exception):
    pass


def run_in_process(folder: Path, *args: str, timeout: float) -> subprocess.CompletedProcess | None:
    """The CLI in this process (validate, plan: no task runs), under an alarm; a traceback shows as one."""
    import signal
    import traceback

    from click.testing import CliRunner

    from groundhog_batch.cli import main

    def alarm(*_):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    here = os.getcwd()
    try:
        os.chdir(folder)
        result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    except _Hang:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(here)
    if isinstance(result.exception, _Hang):
        return None
    stderr = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return subprocess.CompletedProcess(args, result.exit_code, result.output, stderr)


def judge(case: Case, folder: Path, submit: bool, timeout: float = 120) -> list[Outcome]:
    """Write the case into ``folder``, drive the CLI, and list whatever the user should never see."""
    for name, content in {
        **case.files,
        "f.py": case.script.encode(),
        "m.yaml": case.manifest.encode(),
    }.items():
        (folder / name).write_bytes(content)
    found: list[Outcome] = []

    def step(
        name: str, args: list[str], allowed: tuple[int, ...]
    ) -> subprocess.CompletedProcess | None:
        runner = run_in_process if name in ("validate", "plan") else run_cli
        done = runner(folder, *args, timeout=timeout if runner is run_cli else 30)
        if done is None:
            found.append(Outcome(case.number, name, "hang"))
        elif "Traceback (most recent call last)" in done.stderr:
            found.append(Outcome(case.number, name, "traceback", done.stderr[-600:]))
        elif done.returncode not in allowed:
            found.append(Outcome(case.number, name, f"exit {done.returncode}", done.stderr[-300:]))
        return done

    validated = step("validate", ["validate", "m.yaml"], (0, 2))
    if validated is None or validated.returncode != 0:
        return found
    step("plan", ["plan", "m.yaml"], (0,))
    if not submit:
        return found
    submitted = step(
        "submit", ["submit", "m.yaml", "--run-dir", "run", "-o", "out.parquet", "-q"], (0, 1)
    )
    if submitted is None or submitted.returncode not in (0, 1):
        return found
    for suffix in FORMATS:
        step(f"collect{suffix}", ["collect", "run", "-o", f"out{suffix}"], (0,))
    found += table_problems(case, folder)
    if case.number % 5 == 0:
        step("report", ["report", "run"], (0,))
        step("logs", ["logs", "run"], (0,))
    return found


def table_problems(case: Case, folder: Path) -> list[Outcome]:
    """The exported table keeps one meaning per column, and each call got plain Python values."""
    import pyarrow.parquet as pq

    found = []
    try:
        table = pq.read_table(folder / "out.parquet")
    except Exception as exc:
        return [Outcome(case.number, "table", "unreadable", repr(exc))]
    columns = table.column_names
    if len(columns) != len(set(columns)):
        found.append(Outcome(case.number, "table", "duplicate columns", str(columns)))
    statuses = set(table.column("status").to_pylist()) if "status" in columns else set()
    if not statuses <= STATES:
        found.append(
            Outcome(case.number, "table", "status column holds other values", str(statuses))
        )
    for name in case.swept:
        if name not in columns:
            found.append(
                Outcome(case.number, "table", f"parameter {name!r} has no column", str(columns))
            )
    rows = json.loads((folder / "out.json").read_text("utf-8"))
    for row in rows:
        for key, value in row.items():
            if key.startswith("result.") and isinstance(value, str) and value.startswith("["):
                try:
                    module, kind, _ = json.loads(value)
                except ValueError:
                    continue
                if module.split(".")[0] in ("numpy", "pandas"):
                    found.append(
                        Outcome(case.number, "call", f"{key[7:]} arrived as {module}.{kind}")
                    )
        if row.get("result.numpy_loaded") is True:
            found.append(
                Outcome(case.number, "call", "numpy was imported in the call's environment")
            )
    return found


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument(
        "--submit", type=int, default=50, help="how many of the valid cases also run"
    )
    parser.add_argument("--seed", type=int, default=22)
    options = parser.parse_args(argv)
    rng = random.Random(options.seed)
    found: list[Outcome] = []
    counts = {"cases": 0, "valid": 0, "submitted": 0}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(options.cases):
            case = make_case(number, rng)
            folder = Path(scratch) / f"case-{number}"
            folder.mkdir()
            submit = counts["submitted"] < options.submit
            problems = judge(case, folder, submit)
            counts["cases"] += 1
            ran = (folder / "run").exists()
            counts["submitted"] += ran
            counts["valid"] += ran or (
                not any(p.step == "validate" for p in problems) and _valid(folder)
            )
            found += problems
            for problem in problems:
                print(
                    f"case {number} ({case.described}) {problem.step}: {problem.problem} {problem.detail[-300:]}",
                    flush=True,
                )
    kinds: dict[str, int] = {}
    for problem in found:
        kinds[problem.problem.split(":")[0]] = kinds.get(problem.problem.split(":")[0], 0) + 1
    print(
        json.dumps(
            {
                **counts,
                "problems": len(found),
                "by_kind": kinds,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 1 if found else 0


def _valid(folder: Path) -> bool:
    done = run_in_process(folder, "validate", "m.yaml", timeout=30)
    return done is not None and done.returncode == 0


if __name__ == "__main__":
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
    sys.exit(main(sys.argv[1:]))
