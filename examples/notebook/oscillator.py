# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""A damped oscillator rung down from x = 1: how long until its amplitude falls below 1%?

``release``: a file the calls of the second batch wait for (up to ``wait_s``), so that
the notebook's run is surely still going when the kernel is restarted.
"""

import math
import os
import time


def ring_down(
    omega0: float,
    batch: int = 1,
    damping: float = 0.05,
    release: str | None = None,
    wait_s: float = 120.0,
) -> dict:
    if batch == 2 and release:
        deadline = time.monotonic() + wait_s
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.05)
    if omega0 <= 0:
        raise ValueError(f"omega0 must be positive, got {omega0}")
    gamma = damping * omega0
    settle_s = math.log(100) / gamma
    return {"settle_s": round(settle_s, 3), "periods": round(settle_s * omega0 / (2 * math.pi), 2)}
