"""Write readings.parquet: 50,000 detector readings, with NaN planted in three stretches."""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
n = 50_000
time_s = np.arange(n) * 0.01
signal = rng.standard_t(5, n) * (1 + 0.5 * np.sin(time_s / 40))
energy = rng.gamma(2.0, 1.5, n) + 0.002 * time_s
for start in (7_300, 23_010, 41_500):
    signal[start : start + 12] = np.nan
frame = pd.DataFrame({"time_s": time_s, "signal": signal, "energy": energy})
frame.to_parquet(Path(__file__).with_name("readings.parquet"), index=False)
