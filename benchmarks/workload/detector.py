# /// script
# requires-python = ">=3.10"
# dependencies = ["pandas", "pyarrow"]
# ///
"""Count the events above threshold in a chunk of detector readings."""


def detect(data, threshold: float = 3.0) -> dict:
    missing = int(data["signal"].isna().sum())
    if missing:  # planted: a few chunks hold readings the detector lost
        raise ValueError(
            f"{missing} readings are missing (NaN) in rows {data.index[0]}-{data.index[-1]}"
        )
    above = data[data["signal"].abs() > threshold]
    return {
        "events": int(len(above)),
        "rate_per_s": float(len(above) / (data["time_s"].iloc[-1] - data["time_s"].iloc[0])),
        "mean_energy": float(data["energy"].mean()),
    }
