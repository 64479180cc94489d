"""Numbers as people write them, and the statistics of replicates.

A figure shows ``0.3``, not ``0.30000000000000004``, and ``4``, not
``3.999999999999999``: values drawn are rounded to ``DIGITS`` significant
digits (what ``linspace`` and float arithmetic add beyond that is noise), and
text uses the shortest form. The results table keeps every value exactly.
"""

from __future__ import annotations

import math
from typing import Any

DIGITS = 12

# Student's t, two-sided 95% (the 0.975 quantile), for 1 to 30 degrees of freedom.
_T975 = (
    12.706204736174707,
    4.302652729749464,
    3.182446305284263,
    2.7764451051977934,
    2.570581835636314,
    2.4469118511449692,
    2.3646242515927844,
    2.306004135204166,
    2.2621571628540993,
    2.2281388519649385,
    2.200985160082949,
    2.1788128296634177,
    2.1603686564610127,
    2.1447866879169273,
    2.131449545559323,
    2.1199052992210112,
    2.1098155778331806,
    2.10092204024096,
    2.093024054408263,
    2.0859634472658364,
    2.079613844727662,
    2.0738730679040147,
    2.0686576104190406,
    2.0638985616280205,
    2.059538552753294,
    2.055529438642871,
    2.0518305164802833,
    2.048407141795244,
    2.0452296421327034,
    2.0422724563012373,
)
_Z975 = 1.959963984540054


def t975(dof: int) -> float:
    """Student's t quantile for a two-sided 95% interval; past 30 degrees of freedom, a Cornish-Fisher
    expansion (error below 1e-5 there)."""
    if dof < 1:
        return math.nan
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    )


def tidy(value: Any) -> Any:
    """A float rounded to ``DIGITS`` significant digits (ints, text and missing values as they are)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{DIGITS}g}")
    return value


def tidy_column(column):
    """A pandas column with its floats tidied (for drawing; never for the table).

    A parameter's column holds a few values a million times: each distinct value is tidied once.
    """
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_float_dtype(column):
        return column
    if column.dtype != np.float64:
        return column.map(tidy)
    codes, distinct = pd.factorize(column)  # NaN: code -1
    if len(distinct) * 2 > len(column):
        return column.map(tidy)
    tidied = np.array([tidy(value) for value in distinct] + [np.nan], dtype=np.float64)
    values, out = column.to_numpy(), tidied[codes]
    # -0.0 and 0.0 are one distinct value to factorize: each keeps its own sign, as tidy() leaves it.
    zeros = values == 0
    out[zeros] = values[zeros]
    return pd.Series(out, index=column.index, name=column.name)


def number_text(value: Any) -> str:
    """``0.3``, ``4``, ``1e-06``, ``12,000`` stays ``12000`` (a parameter value is not a count)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        value = tidy(value)
        return (
            str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.{DIGITS}g}"
        )
    try:
        import numpy as np

        if isinstance(value, np.floating):
            return number_text(float(value))
        if isinstance(value, np.integer):
            return str(int(value))
    except ImportError:  # pragma: no cover - numpy comes with pandas
        pass
    return str(value)


def short(value: float) -> str:
    """A measured value in hover text and captions: six significant digits, as the eye reads it."""
    if value is None or value != value:
        return "n/a"
    return number_text(float(f"{float(value):.6g}"))


def tick_text(value: Any) -> str:
    """A tick label: three significant digits (``39.8``, ``2.51``, ``100``)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return number_text(float(f"{float(value):.3g}"))
    return number_text(value)


def seconds_text(seconds: float) -> str:
    """``0.51 ms``, ``2.3 s``, ``4m05s``: a duration as a person says it."""
    if seconds != seconds or seconds is None:
        return "?"
    if seconds < 1e-3:
        return f"{short(float(f'{seconds * 1e6:.2g}'))} µs"
    if seconds < 1:
        return f"{short(float(f'{seconds * 1e3:.2g}'))} ms"
    if seconds < 60:
        return f"{short(float(f'{seconds:.3g}'))} s"
    from ..run_view import duration_text

    return duration_text(seconds)
