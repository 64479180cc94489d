# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""Estimate pi by throwing random points at the unit square."""

import random


def estimate_pi(n: int, seed: int, precision: int = 64) -> dict:
    rng = random.Random(seed)
    inside = sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    return {"pi": 4.0 * inside / n, "inside": inside}


if __name__ == "__main__":
    print(estimate_pi(1000, 0))
