r"""Powder XRD (Cu K-alpha, 2-theta 10-80 deg) from phase fractions, and phase fractions back from a pattern.

The peak lists are SYNTHETIC: the target's positions follow spinel LiMn2O4's main reflections approximately; every
other phase's peaks are invented deterministically from its name (plausible positions and intensities, not
ICDD data). What is modelled for real is how a diffractometer turns phases into counts:

* pseudo-Voigt peaks (eta = 0.5) whose FWHM combines the instrument's Caglioti function
  ``FWHM^2 = U tan^2(theta) + V tan(theta) + W`` (Caglioti, Paoletti & Ricci, Nucl. Instrum. 3, 223 (1958)) with
  Scherrer size broadening ``beta = K lambda / (D cos theta)`` (quadrature sum) - a hotter, longer firing grows
  larger crystallites (``chemistry.Product.crystallite_nm``) and narrows the peaks;
* a background (decaying air scatter + constant) and Poisson counting noise from a seeded generator;
* every phase has the same integrated intensity per unit fraction (reference intensity ratio 1, documented
  simplification), so fitted scale factors ARE phase fractions.

:func:`estimate_fractions` is the quantitative analysis an objective will use: non-negative least squares
(``scipy.optimize.nnls``) of the reference patterns plus background terms, trying a few crystallite sizes and
keeping the best fit - a whole-pattern (Rietveld-lite) fit without refining positions. On patterns of fired
recipes it recovers every phase fraction within 0.02 absolute (tests/test_solid_state_sim.py, 5 random recipes);
a real pattern would also need peak-shift (lattice, sample displacement) and preferred-orientation terms.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

WAVELENGTH_NM = 0.15406
TWO_THETA = np.arange(10.0, 80.0 + 1e-9, 0.02)
CAGLIOTI_UVW = (0.004, -0.002, 0.003)  # deg^2
SCHERRER_K = 0.9
COUNTS_PER_UNIT = 2.0e5  # integrated counts of one whole phase
SIZES_NM = (20.0, 35.0, 60.0, 100.0, 180.0)

# LiMn2O4 (Fd-3m) main reflections, approximately: (2-theta, relative intensity)
_TARGET_PEAKS = ((18.6, 100), (36.1, 45), (37.8, 10), (43.9, 40), (48.1, 8), (58.1, 15), (63.8, 25), (67.1, 8))


def peaks(phase: str) -> list[tuple[float, float]]:
    """(2-theta deg, relative intensity) of a phase; invented from the name for all but the target."""
    if phase == "LiMn2O4":
        return list(_TARGET_PEAKS)
    rng = np.random.default_rng(zlib.crc32(phase.encode()))
    count = int(rng.integers(6, 11))
    pos = np.sort(rng.uniform(12, 78, count))
    inten = rng.uniform(8, 60, count)
    inten[int(rng.integers(count))] = 100
    return [(float(p), float(i)) for p, i in zip(pos, inten)]


def fwhm_deg(two_theta, crystallite_nm: float):
    """Peak width: instrument (Caglioti) and crystallite size (Scherrer) in quadrature."""
    theta = np.radians(np.asarray(two_theta) / 2)
    u, v, w = CAGLIOTI_UVW
    inst2 = np.maximum(1e-6, u * np.tan(theta) ** 2 + v * np.tan(theta) + w)
    size = np.degrees(SCHERRER_K * WAVELENGTH_NM / (crystallite_nm * np.cos(theta)))
    return np.sqrt(inst2 + size**2)


def phase_profile(phase: str, crystallite_nm: float, two_theta=TWO_THETA) -> np.ndarray:
    """Counts of one whole phase (unit fraction), without background or noise."""
    out = np.zeros_like(two_theta, dtype=float)
    for pos, rel in peaks(phase):
        h = float(fwhm_deg(pos, crystallite_nm))
        x = (two_theta - pos) / h
        gauss = math.sqrt(4 * math.log(2) / math.pi) / h * np.exp(-4 * math.log(2) * x**2)
        lorentz = 2 / (math.pi * h) / (1 + 4 * x**2)
        out += rel * (0.5 * gauss + 0.5 * lorentz)
    step = two_theta[1] - two_theta[0]
    return out / (out.sum() * step) * COUNTS_PER_UNIT * step


def background(two_theta=TWO_THETA) -> np.ndarray:
    return 40.0 + 400.0 * np.exp(-(two_theta - 10) / 8)


def pattern(
    fractions: dict[str, float], crystallite_nm: float, rng: np.random.Generator, two_theta=TWO_THETA
) -> np.ndarray:
    """Measured counts: the phases' profiles by fraction, plus background, with Poisson noise."""
    mean = background(two_theta)
    for phase, f in fractions.items():
        if f > 0:
            mean = mean + f * phase_profile(phase, crystallite_nm, two_theta)
    return rng.poisson(mean).astype(float)


def estimate_fractions(counts, phases, two_theta=TWO_THETA, sizes_nm=SIZES_NM) -> tuple[dict[str, float], float]:
    """Phase fractions (sum 1 over ``phases``) by NNLS of reference patterns; returns (fractions, size_nm)."""
    fractions, size, _ = fit(counts, phases, two_theta, sizes_nm)
    return fractions, size


def fit(counts, phases, two_theta=TWO_THETA, sizes_nm=SIZES_NM) -> tuple[dict[str, float], float, float]:
    """:func:`estimate_fractions` and the fitted amount of all phases together (about 1 for a full charge, as
    every phase has the same integrated intensity per unit fraction; near 0 for an empty crucible, whose pattern is
    background and noise): (fractions, size_nm, amount)."""
    # imported here: scipy.optimize takes about a second, and the lab's devices import this module in runs (and test
    # collections) that never analyse a pattern
    from scipy.optimize import nnls

    counts = np.asarray(counts, dtype=float)
    weight = 1 / np.sqrt(np.maximum(counts, 1.0))  # Poisson weights
    bkg = [np.ones_like(two_theta), np.exp(-(two_theta - 10) / 8), (two_theta - 10) / 70]
    best = None
    for size in sizes_nm:
        refs = [phase_profile(p, size, two_theta) for p in phases]
        a = np.column_stack(refs + bkg) * weight[:, None]
        coef, resid = nnls(a, counts * weight)
        if best is None or resid < best[0]:
            best = (resid, coef[: len(phases)], size)
    _, coef, size = best
    total = coef.sum()
    fractions = {p: (float(c / total) if total > 0 else 0.0) for p, c in zip(phases, coef)}
    return fractions, size, float(total)
