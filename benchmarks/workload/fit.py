# /// script
# requires-python = ">=3.10"
# dependencies = ["numpy", "scipy"]
# ///
"""A damped oscillator measured with noise, and its decay rate and frequency fitted back."""

import numpy as np
from scipy.optimize import curve_fit


def ringdown(t, amplitude, gamma, omega, phase):
    return amplitude * np.exp(-gamma * t) * np.cos(omega * t + phase)


def fit_decay(omega0: float, zeta: float, seed: int, noise: float = 0.05) -> dict:
    """Simulate x(t) = exp(-zeta omega0 t) cos(omega_d t) with noise; fit gamma and omega_d."""
    if zeta > 1 and omega0 > 30:  # planted: an overdamped fast oscillator has nothing to fit
        raise RuntimeError(f"overdamped (zeta={zeta}): no oscillation to fit")
    rng = np.random.default_rng(seed)
    gamma = zeta * omega0
    omega_d = omega0 * np.sqrt(max(1 - zeta**2, 1e-3))
    t = np.linspace(0, 8 / max(gamma, omega0 / 20), 400)
    x = ringdown(t, 1.0, gamma, omega_d, 0.0) + rng.normal(0, noise, t.size)
    guess = [1.0, gamma * rng.uniform(0.8, 1.2), omega_d * rng.uniform(0.95, 1.05), 0.0]
    found, covariance = curve_fit(ringdown, t, x, p0=guess, maxfev=20000)
    residual = x - ringdown(t, *found)
    return {
        "gamma_fit": float(found[1]),
        "omega_fit": float(abs(found[2])),
        "gamma_error": float(np.sqrt(covariance[1, 1])),
        "loss": float(np.mean(residual**2)),
        "relative_error": float(abs(found[1] - gamma) / gamma),
    }
