# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""A toy model evaluated at the points of a table, several ways."""

import math


def evaluate(alpha: float, beta: int, method: str = "exact") -> dict:
    value = math.exp(-alpha * beta)
    if method == "series":
        value = sum((-alpha * beta) ** k / math.factorial(k) for k in range(8))
    return {"value": value, "method": method}
