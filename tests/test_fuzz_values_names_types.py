"""Seeded fuzzing of what flows through a manifest: parameter values, names and types (``fuzz_values``).

Every case is validated and planned in-process under an alarm; the first
valid ones also run (``submit -o``), are collected to every format and, one
in five, reported. A failure names its case number: ``python
tests/fuzz_values.py --cases N`` reproduces it with the same seed.
"""

from __future__ import annotations

import random

from fuzz_values import judge, make_case

N_CASES = 150
N_SUBMITTED = 6
SEED = 22


def test_fuzzed_values_names_and_types_never_give_a_traceback_a_hang_or_a_table_with_two_meanings(
    tmp_path,
):
    rng = random.Random(SEED)
    problems, submitted, valid = [], 0, 0
    for number in range(N_CASES):
        case = make_case(number, rng)
        folder = tmp_path / f"case-{number}"
        folder.mkdir()
        problems += judge(case, folder, submit=submitted < N_SUBMITTED)
        submitted += (folder / "run").exists()
        valid += (folder / "run").exists() or not problems
    assert not problems, "\n".join(
        f"case {p.case} {p.step}: {p.problem} {p.detail}" for p in problems[:5]
    )
    assert submitted == N_SUBMITTED


def test_the_generator_reaches_reserved_names_dates_and_parquet_types():
    rng = random.Random(SEED)
    cases = [make_case(number, rng) for number in range(N_CASES)]
    assert (
        sum(
            any(name in ("status", "result", "call", "error") for name in case.names)
            for case in cases
        )
        > 10
    )
    assert sum("2024-01-31" in case.manifest for case in cases) > 10
    assert sum("p.parquet" in case.files for case in cases) > 10
