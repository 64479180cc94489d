"""Seeded fuzzing of the CLI: hundreds of generated manifests and invocations, none a traceback, none a hang.

Each case runs in-process (click's test runner) under its own alarm, so a
hang fails that case at once instead of stalling the suite. The generator is
seeded: a failure names its case number and reproduces exactly.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass, field

import pytest
import yaml
from click.testing import CliRunner
from conftest import TRIVIAL_SCRIPT

from groundhog_batch.cli import main

N_CASES = 400
SEED = 723
CASE_LIMIT_S = 20  # far above any case's real time: an alarm here means a hang

KEYS = [
    "script",
    "function",
    "sweep",
    "jobs",
    "name",
    "endpoint",
    "endpoints",
    "config",
    "python",
    "dependencies",
    "args",
    "kwargs",
    "calls_per_task",
    "max_parallel",
    "retries",
    "timeout",
    "output",
    "on",
    "yes",
    "no",
    "~",
]
SWEEP_KEYS = ["product", "zip", "rows", "chunks", "exclude", "prodct"]
HOSTILE_SCALARS = [
    0,
    1,
    -3,
    10.0,
    1e20,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    -0.0,
    2**63,
    10**30,
    -(10**40),
    True,
    False,
    None,
    "",
    "auto",
    "local",
    "s.py",
    "square",
    "x",
    "a.csv",
    "params.csv",
    ">=3.10",
    "numpy>=2",
    "a" * 5000,
    "sub",
    "notes/out.csv",
    "out.csv",
    "../../etc/passwd",
    "/dev/null",
    "null\x00byte",
    "ünïcødé",
    "01:00:00",
    "anvil.gpu",
    "5aafb4c1-27b2-40d8-a038-a0277611868f",
    "{a: b}",
    "*alias",
    "- item",
]
HOSTILE_TEXTS = [
    "\x00",
    "\t",
    ": :",
    "[",
    "]",
    "{",
    "}",
    "&a [*a]",
    "*missing",
    "<<: {}",
    "? [a]\n: b",
    "---\n",
    "%YAML 1.1\n",
    "!!python/object:os.system ['echo pwned']",
    '"\\q"',
    "'unclosed",
    "a: b: c",
    "- - -",
    "\ufeff",
    "\r\n",
]


@dataclass
class Case:
    number: int
    args: list[str]
    manifest: bytes | None = None
    files: dict[str, str] = field(default_factory=dict)


def value_spec(rng: random.Random):
    kind = rng.randrange(7)
    small = [
        rng.choice([0, 1, 2, 3, -1, 10**20, 10**9, 2**63, 1.5, "a"])
        for _ in range(rng.randint(0, 3))
    ]
    if kind == 0:
        return {"range": small or [rng.choice([0, 5, 10**12])]}
    if kind == 1:
        return {
            "linspace": [
                rng.choice([0, 1, 1e308, float("inf")]),
                rng.choice([1, -1, float("nan")]),
                rng.choice([0, 1, 3, 10**9, 2**63, 2.5]),
            ]
        }
    if kind == 2:
        return {
            "geomspace": [
                rng.choice([0, 1, -1, 1e-300]),
                rng.choice([1000, -10, 0]),
                rng.choice([1, 3, 10**9]),
            ]
        }
    if kind == 3:
        return {"values": small}
    if kind == 4:
        return small
    return rng.choice(HOSTILE_SCALARS)


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(HOSTILE_SCALARS)
    if roll < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(KEYS + SWEEP_KEYS + ["x", "offset"]): random_value(rng, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def random_sweep(rng: random.Random):
    sweep: dict = {}
    if rng.random() < 0.8:
        sweep["product"] = {
            rng.choice(["x", "offset", "y", "2x"]): value_spec(rng)
            for _ in range(rng.randint(1, 3))
        }
    if rng.random() < 0.3:
        sweep["zip"] = {"x": [1, 2, 3][: rng.randint(0, 3)], "offset": [1, 2][: rng.randint(0, 2)]}
    if rng.random() < 0.3:
        sweep["rows"] = {
            "file": rng.choice(["params.csv", "missing.csv", "sub", "a" * 300 + ".csv"]),
            **(
                {"columns": rng.sample(["x", "offset", "ofset", "z"], 2)}
                if rng.random() < 0.5
                else {}
            ),
        }
    if rng.random() < 0.2:
        sweep["chunks"] = {
            "x": {
                rng.choice(["values", "file"]): rng.choice([[1, 2, 3], "params.csv", []]),
                rng.choice(["rows", "size", "parts"]): rng.choice([1, 0, 2, 10**30]),
            }
        }
    if rng.random() < 0.3:
        sweep["exclude"] = [
            {rng.choice(["x", "offset", "zz"]): rng.choice([1, 2, 1.0, True, None])}
            for _ in range(rng.randint(0, 3))
        ]
    if rng.random() < 0.1:
        sweep[rng.choice(SWEEP_KEYS)] = random_value(rng)
    return (
        sweep
        if rng.random() < 0.8
        else [sweep, random_sweep(rng)]
        if rng.random() < 0.5
        else random_value(rng)
    )


def random_document(rng: random.Random):
    document = {"script": "s.py", "function": "square"}
    if rng.random() < 0.8:
        document["sweep"] = random_sweep(rng)
    for _ in range(rng.randint(0, 4)):
        document[rng.choice(KEYS)] = random_value(rng)
    if rng.random() < 0.15:
        document = {
            "script": "s.py",
            "jobs": [
                {
                    "function": "square",
                    **({"name": rng.choice(["a", "b", "bad name"])}),
                    "sweep": random_sweep(rng),
                }
                for _ in range(rng.randint(0, 3))
            ],
        }
    return document


def valid_document(rng: random.Random):
    """A manifest that should validate: small sweeps of every kind, so plans are made and rendered too."""
    product = {
        "x": rng.choice(
            [
                [1, 2, 3],
                {"range": [0, rng.randint(1, 20), rng.choice([1, 2])]},
                {"linspace": [0, 1, rng.randint(1, 9)]},
                {"geomspace": [1, 1000, rng.randint(1, 5)]},
                {"values": [[1], [2, 3]]},
                7,
            ]
        )
    }
    sweep: dict = {"product": product}
    roll = rng.randrange(4)
    if roll == 1:
        sweep["zip"] = {"offset": [0, 1, 2]}
    elif roll == 2:
        sweep = {"rows": {"file": "params.csv"}}
    elif roll == 3:
        sweep["chunks"] = {
            "offset": {"values": [1, 2, 3, 4, 5], rng.choice(["size", "parts"]): rng.randint(1, 6)}
        }
    if "product" in sweep and rng.random() < 0.4:
        sweep["exclude"] = [{"x": rng.choice([1, 2, 0, 1.0])}]
    document = {"script": "s.py", "function": "square", "sweep": sweep}
    for key, choices in [
        ("retries", [0, 2]),
        ("timeout", [1, 0.5, 600]),
        ("calls_per_task", [1, 3, "auto"]),
        ("max_parallel", [1, 4]),
        ("name", ["fuzz-run"]),
        ("dependencies", [["numpy>=1.24"]]),
    ]:
        if rng.random() < 0.3:
            document[key] = rng.choice(choices)
    if rng.random() < 0.2:
        document = {
            "script": "s.py",
            "jobs": [
                {"name": f"j{i}", "function": "square", "sweep": sweep}
                for i in range(rng.randint(1, 3))
            ],
        }
    return document


def alias_bomb(rng: random.Random) -> str:
    width, levels = rng.randint(2, 12), rng.randint(2, 12)
    text = "script: s.py\nfunction: square\nconfig:\n  a0: &a0 [1]\n"
    for level in range(1, levels):
        text += f"  a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]\n"
    return text


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        roll = rng.random()
        if roll < 0.4:
            text = text[:at] + rng.choice(HOSTILE_TEXTS) + text[at:]
        elif roll < 0.6:
            text = text[:at]
        elif roll < 0.8:
            text = text.replace("  ", rng.choice(["\t", " ", "   "]), 1)
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                text += rng.choice(lines)
    return text


def hostile_text(rng: random.Random) -> bytes:
    roll = rng.randrange(6)
    if roll == 0:
        return alias_bomb(rng).encode()
    if roll == 1:
        depth = rng.choice([10, 63, 65, 200, 5000])
        return (
            "script: s.py\nfunction: square\nargs: " + "[" * depth + "]" * depth + "\n"
        ).encode()
    if roll == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if roll == 3:
        return (
            "script: s.py\nfunction: square\nkwargs: {x: "
            + "9" * rng.choice([50, 101, 5000])
            + "}\n"
        ).encode()
    if roll == 4:
        return "".join(
            rng.choice(HOSTILE_TEXTS + ["a", "b", ":", " ", "\n", "x: 1\n"]) for _ in range(30)
        ).encode("utf-8", "replace")
    return (
        "script: s.py\nfunction: square\n"
        + f"{rng.choice(['on', 'yes', 'no', 'null', '1', '1.5', '~'])}: 1\n"
    ).encode()


def random_override(rng: random.Random) -> str:
    roll = rng.randrange(8)
    if roll == 0:
        return (
            ".".join(
                rng.choice(["a", "0", "sweep", "product"])
                for _ in range(rng.choice([1, 3, 16, 17, 3000]))
            )
            + "=1"
        )
    if roll == 1:
        return "kwargs.x=" + rng.choice(
            ["9" * 5000, "[" * 5000 + "]" * 5000, "{a: [1, 2]}", "'unclosed", "*a", ".nan"]
        )
    if roll == 2:
        return rng.choice(
            [
                "noequals",
                "=1",
                "..=2",
                "a..b=3",
                "jobs.99.retries=1",
                "config=1",
                "config.walltime=01:00:00",
            ]
        )
    if roll == 3:
        return f"sweep.product.x={rng.choice(['[1, 2]', '{range: [0, 1e20]}', '{linspace: [0, 1, 1000000000]}', '[]'])}"
    if roll == 4:
        return f"{rng.choice(['retries', 'max_parallel', 'timeout', 'calls_per_task'])}={rng.choice(['-3', 'many', '.inf', '1e400', '0'])}"
    if roll == 5:
        return (
            f"output={rng.choice(['sub', 'notes/x.csv', 'x.xlsx', 'a' * 5000 + '.csv', 'ok.csv'])}"
        )
    if roll == 6:
        return (
            f"script={rng.choice(['a' * 5000 + '.py', 'sub', 'notes/s.py', 'nothing.py', 's.py'])}"
        )
    return (
        f"kwargs.{rng.choice(['x', 'offset', 'on', '2x'])}={rng.choice(['1', 'yes', '~', '[1]'])}"
    )


def make_case(number: int, rng: random.Random) -> Case:
    roll = rng.random()
    if roll < 0.06:  # commands on run directories that are not runs
        command = rng.choice(["status", "collect", "resume", "retry", "cancel"])
        return Case(
            number, [command, rng.choice(["nothere", "notes", "sub", "sweep.yaml", "a" * 5000])]
        )
    if roll < 0.25:
        manifest = hostile_text(rng)
    else:
        try:
            document = valid_document(rng) if roll < 0.55 else random_document(rng)
            text = yaml.safe_dump(document, allow_unicode=True, width=10_000)
        except yaml.YAMLError:
            text = "script: s.py\n"
        manifest = (mutate(rng, text) if rng.random() < 0.3 else text).encode("utf-8", "replace")
    command = rng.choice(
        [
            ["validate"],
            ["plan"],
            ["plan", "--json"],
            ["plan", "--local"],
            ["plan", "--render", "0"],
            ["plan", "--endpoint", rng.choice(["nowhere", "anvil.gpu", "local"])],
            ["validate"],
        ]
    )
    args = [*command, "sweep.yaml"]
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        args += ["--set", random_override(rng)]
    return Case(number, args, manifest)


class Hang(BaseException):
    """Raised by the alarm inside a case that ran past its limit (a BaseException: no `except Exception` eats it)."""


def _on_alarm(signum, frame):
    raise Hang()


@pytest.fixture
def fuzz_folder(project, monkeypatch):
    project.write("s.py", TRIVIAL_SCRIPT)
    project.write("params.csv", "x,offset\n1,2\n3,4\n")
    project.write("notes", "a file, not a folder")
    (project.root / "sub").mkdir()
    monkeypatch.chdir(project.root)
    return project


def test_generated_manifests_and_invocations_never_traceback_or_hang(fuzz_folder):
    rng = random.Random(SEED)
    runner = CliRunner()
    tracebacks, hangs, exit_codes = [], [], {}
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for number in range(N_CASES):
            case = make_case(number, rng)
            if case.manifest is not None:
                (fuzz_folder.root / "sweep.yaml").write_bytes(case.manifest)
            signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT_S)
            try:
                result = runner.invoke(main, case.args, catch_exceptions=True)
            except Hang:
                hangs.append(case)
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            exit_codes[result.exit_code] = exit_codes.get(result.exit_code, 0) + 1
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            if crashed or "Traceback" in result.output or result.exit_code not in (0, 2):
                tracebacks.append((case, result.exception, result.output[-500:]))
    finally:
        signal.signal(signal.SIGALRM, previous)
    summary = f"{N_CASES} cases: {len(tracebacks)} tracebacks, {len(hangs)} hangs, exit codes {sorted(exit_codes.items())}"
    print(summary)
    assert not hangs, (
        f"{summary}; first hang: case {hangs[0].number} {hangs[0].args} {hangs[0].manifest[:300]!r}"
    )
    assert not tracebacks, (
        f"{summary}; first: case {tracebacks[0][0].number} {tracebacks[0][0].args[:4]} "
        f"{(tracebacks[0][0].manifest or b'')[:300]!r}: {tracebacks[0][1]!r}\n{tracebacks[0][2]}"
    )
    assert (
        exit_codes.get(0, 0) >= 20 and exit_codes.get(2, 0) >= 100
    )  # the generator reaches both outcomes
