r"""Physics of reactively sputtered Nb-doped anatase TiO2 (TNO) films: recipe -> film -> sheet resistance.

Nothing here knows about devices or time; the simulated chamber and probe (``devices.py``) call it. The model is
phenomenological but every factor follows a mechanism reported for TNO or for sputtered transparent conducting
oxides in general; the constants are chosen so the numbers land where real films do (best resistivity a few
1e-4 ohm cm, as for the best Ti(1-x)Nb(x)O2 films, Furubayashi et al., APL 86, 252101 (2005)).

Inputs (the recipe): ``o2_pressure`` p (mTorr, O2 partial pressure in ~3 mTorr Ar), ``substrate_temperature`` T
(degC), ``nb_fraction`` x = Nb/(Nb+Ti), ``rf_power`` P (W), ``duration`` d (min).

Oxygen balance (Berg model of reactive sputtering; Berg & Nyberg, Thin Solid Films 476, 215 (2005)). The O2 partial
pressure that just oxidizes the arriving metal flux grows with that flux (~P) and falls with T because oxygen uptake
at the growth surface is activated::

    p_s(P, T) = p_s0 * (P / P_ref) * exp(-(T - T_ref) / T_ox)          xi = p / p_s      (oxygen excess)

Deposition rate and thickness. Target poisoning theta = xi_t / (1 + xi_t) (xi_t: xi without the substrate term)
covers the target with oxide, which sputters slower::

    r = r_m * P * (1 - f_p * theta)   [nm/min]          t = r * d   [nm]

Carriers. Nb(5+) on Ti(4+) sites is a shallow donor. Above its solubility/compensation limit extra Nb is not
activated (Nb-rich clusters, compensating Ti vacancies), so activation falls as 1/(1 + (x/x_s)^3). Donors are only
shallow in crystalline anatase: amorphous films and rutile (heavy electrons, deep Nb levels) activate few.
Excess oxygen compensates donors by acceptor-like defects (Ti vacancies, O interstitials); with an acceptor density
~xi^3 this is the steep rise of resistivity with O2 seen in every TNO sputtering study. Oxygen vacancies (V_O) give
a small background n_V in reduced films (so undoped TiO2 is not an ideal insulator)::

    n = N_Ti * x / (1 + (x/x_s)^3) * kappa(T) / (1 + xi^3) + n_V / (1 + xi^2)
    kappa(T) = k_a + (1 - k_a) * c(T) * (1 - k_r * r(T))
    c(T) = sigmoid((T - T_c) / w_c)   crystallized (anatase) fraction: amorphous below ~300 degC
    r(T) = sigmoid((T - T_r) / w_r)   rutile fraction: anatase -> rutile above ~600 degC

Mobility. Matthiessen's rule in the anatase grains: phonons, ionized Nb impurities (~1/x) and grain boundaries
(grains grow with T); amorphous and rutile phases conduct poorly (rule of mixtures). Strongly reducing growth
(xi << 1) creates Ti(3+)/Magneli defects and rutile inclusions; slow growth incorporates background gas (H2O) per
deposited atom ~ 1/r; energetic negative O ions, whose energy grows with the target voltage ~ P, damage the film::

    1/mu_a = 1/mu_L + x/mu_ii1 + 1/(mu_gb * exp((T - T_ref)/T_g))
    mu = [(1 - c) mu_am + c ((1 - r) mu_a + r mu_rut)] / (1 + (xi_d/xi)^1.5) / (1 + r_bg/r) / (1 + (P/P_b)^2)

Sheet resistance. rho = 1/(q n mu). A surface/interface depletion layer t_dead makes thin films worse; thick films
crack while cooling from T because TiO2 and glass expand differently: the channel-cracking criterion (Hutchinson &
Suo, Adv. Appl. Mech. 29 (1992)) gives a critical thickness ~ 1/(thermal stress)^2 ~ 1/(T - 25 + dT_0)^2, and a
crack network cuts the current paths::

    h_c = h_c0 * ((T_ref - 25 + dT_0) / (T - 25 + dT_0))^2
    R_s = rho / t * (1 + t_dead / t) * (1 + (t / h_c)^4)

Measurement. The probe multiplies R_s by exp(N(0, noise)) (default noise 0.03, i.e. ~3 %), from a seeded RNG.

Landscape (for the campaign bounds :data:`CAMPAIGN_BOUNDS`): one global minimum inside the box, see
:func:`optimum`: 2.50 ohm/sq at p = 0.28 mTorr, T = 443 degC, x = 0.052, P = 209 W, d = 73 min (a 1.5 um film with
rho = 2.8e-4 ohm cm, n = 1.1e21 cm^-3, mu = 21 cm^2/Vs). log R_s is smooth and unimodal (local descents from random
recipes all end there), but the good region is a thin tilted ridge: p and P trade off through xi, T shifts both xi
and the cracking thickness, P and d trade off through t. Uniformly random recipes reach R_s <= 5 ohm/sq in only
~1.5 % of draws (O2 drawn on a log scale, as the campaign searches it; 0.4 % on a linear scale; computed in the
tests), while GP-based BO (6 Sobol points, then qLogNEI on log R_s) got there in 6-16 trials over 5 seeds.

Dopants (the transparent-conductor campaign, experiments/transparent_conductor.yaml). An optional recipe field
``dopant`` (one of :data:`DOPANTS`; default ``"Nb"``) picks the donor sputtered with Ti; ``nb_fraction`` is then the
dopant fraction x = M/(M+Ti). Each dopant has a donor yield (electrons per dopant atom times its activation relative
to Nb) and an ionized-impurity scattering weight (Brooks-Herring: scattering per centre ~ Z^2, Z its charge relative
to the Ti(4+) site)::

    n   = N_Ti * g_M * x / (1 + (x/x_s)^3) * kappa(T) / (1 + xi^3) + n_V / (1 + xi^2)
    1/mu_a = 1/mu_L + s_M * x/mu_ii1 + 1/(mu_gb * exp((T - T_ref)/T_g))

* Nb(5+): g = 1, s = 1 -- exactly the model above (recipes without ``dopant`` are Nb).
* Ta(5+): same radius as Nb(5+) (0.64 A, Shannon, CN 6) and the same single donor electron; slightly fewer
  activated (g = 0.95) and a slightly lower mobility (s = 1.2), as reported for Ta:TiO2 against Nb:TiO2
  (Hitosugi et al., Jpn. J. Appl. Phys. 44, L1063 (2005)).
* W(6+): a double donor (two electrons per W on a Ti site) but a smaller ion (0.60 A) that activates less readily
  (70 %): g = 2 * 0.7 = 1.4; its doubly charged centres scatter four times as strongly (s = Z^2 = 4).

Deposition process profile: :func:`process_profile` gives the chamber pressure and substrate temperature seen
during a recipe (pump-down, heater ramp, plasma strike, steady deposition with small fluctuations, cool-down),
which the simulated chamber streams as monitored signals.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Recipe fields, in the order the vectorized functions take them.
PARAMETERS = ("o2_pressure", "substrate_temperature", "nb_fraction", "rf_power", "duration")
#: Optional recipe field: the donor (``nb_fraction`` is then its fraction M/(M+Ti)); absent means Nb.
DOPANT_FIELD = "dopant"
UNITS = {
    "o2_pressure": "mTorr",
    "substrate_temperature": "degC",
    "nb_fraction": "Nb/(Nb+Ti)",
    "rf_power": "W",
    "duration": "min",
}

#: The search box of experiments/thinfilm.yaml (kept equal by a test). o2_pressure is searched on a log scale.
CAMPAIGN_BOUNDS: dict[str, tuple[float, float]] = {
    "o2_pressure": (0.05, 5.0),
    "substrate_temperature": (25.0, 700.0),
    "nb_fraction": (0.0, 0.2),
    "rf_power": (50.0, 400.0),
    "duration": (10.0, 120.0),
}

Q = 1.602176634e-19  # C
N_TI = 2.93e22  # Ti sites per cm^3 in anatase (3.89 g/cm^3, 79.87 g/mol)

# Oxygen balance
P_REF = 200.0  # W
T_REF = 450.0  # degC
P_S0 = 0.6  # mTorr: stoichiometric O2 partial pressure at P_REF, T_REF
T_OX = 350.0  # degC: temperature scale of oxygen uptake
# Rate
R_M = 0.12  # nm/min/W in metallic mode
F_P = 0.6  # rate lost in fully poisoned (oxide) mode
# Donors
X_S = 0.08  # Nb solubility/compensation scale
K_A = 0.1  # activation left in amorphous films
K_R = 0.8  # activation lost in rutile
N_V = 2e19  # cm^-3 oxygen-vacancy electrons in reduced films
T_C, W_C = 360.0, 25.0  # crystallization (degC)
T_R, W_R = 640.0, 35.0  # anatase -> rutile (degC)
# Mobility, cm^2/Vs
MU_L = 70.0  # phonon-limited in anatase
MU_II1 = 5.0  # ionized-impurity scattering: 1/mu_ii = x / MU_II1 (Nb donors are the scattering centres)
MU_GB = 160.0  # grain-boundary limited at T_REF
T_G = 150.0  # degC: grain growth scale
MU_AM = 0.3  # amorphous
MU_RUT = 1.0  # rutile
XI_D = 0.15  # oxygen deficiency below which defects scatter
R_BG = 3.0  # nm/min: background-gas incorporation scale
P_B = 800.0  # W: negative-ion damage scale
# Thickness
T_DEAD = 15.0  # nm
H_C0 = 1900.0  # nm: critical cracking thickness at T_REF
DT_0 = 100.0  # degC


@dataclass(frozen=True)
class Dopant:
    """A donor on the Ti(4+) site: ``donor_yield`` electrons per atom (activation relative to Nb included) and
    ``scattering`` weight of its ionized-impurity scattering relative to Nb(5+); ionic radius (Shannon, CN 6, in
    Angstrom) and valence are the descriptors a campaign can give the optimizer."""

    donor_yield: float
    scattering: float
    ionic_radius: float
    valence: int


#: Dopants the chamber's co-sputter targets provide. Nb is the reference (the physics above, unchanged).
DOPANTS: dict[str, Dopant] = {
    "Nb": Dopant(donor_yield=1.0, scattering=1.0, ionic_radius=0.64, valence=5),
    "Ta": Dopant(donor_yield=0.95, scattering=1.2, ionic_radius=0.64, valence=5),
    "W": Dopant(donor_yield=1.4, scattering=4.0, ionic_radius=0.60, valence=6),
}


def dopant(name: Any = None) -> Dopant:
    """The :class:`Dopant` called ``name`` (None: Nb); a clear KeyError for an unknown one."""
    key = "Nb" if name is None else str(name)
    if key not in DOPANTS:
        raise KeyError(f"unknown dopant {key!r} (known: {sorted(DOPANTS)})")
    return DOPANTS[key]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Film:
    """A deposited film's hidden properties (what the sample really is; only R_s is measured)."""

    thickness_nm: float
    carrier_density_cm3: float
    mobility_cm2_vs: float
    resistivity_ohm_cm: float
    sheet_resistance: float  # ohm/sq, noise-free
    crystallinity: float
    rutile_fraction: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def film_arrays(p: Any, T: Any, x: Any, P: Any, d: Any, dopant_name: Any = None) -> dict[str, np.ndarray]:
    """The model, vectorized over numpy arrays (broadcasting); returns every intermediate quantity.
    ``dopant_name`` (one of :data:`DOPANTS`, default Nb) is a single name for the whole array."""
    dop = dopant(dopant_name)
    p, T, x, P, d = (np.asarray(v, dtype=float) for v in (p, T, x, P, d))
    p = np.maximum(p, 1e-6)
    xi_t = p / (P_S0 * P / P_REF)
    xi = xi_t * np.exp((T - T_REF) / T_OX)
    theta = xi_t / (1.0 + xi_t)
    rate = R_M * P * (1.0 - F_P * theta)
    t = rate * d

    c = _sigmoid((T - T_C) / W_C)
    r = _sigmoid((T - T_R) / W_R)
    kappa = K_A + (1.0 - K_A) * c * (1.0 - K_R * r)
    n = N_TI * dop.donor_yield * x / (1.0 + (x / X_S) ** 3) * kappa / (1.0 + xi**3) + N_V / (1.0 + xi**2)

    inv_mu_a = 1.0 / MU_L + dop.scattering * x / MU_II1 + 1.0 / (MU_GB * np.exp((T - T_REF) / T_G))
    mu = (1.0 - c) * MU_AM + c * ((1.0 - r) / inv_mu_a + r * MU_RUT)
    mu = mu / (1.0 + (XI_D / xi) ** 1.5) / (1.0 + R_BG / rate) / (1.0 + (P / P_B) ** 2)

    rho = 1.0 / (Q * n * mu)
    h_c = H_C0 * ((T_REF - 25.0 + DT_0) / (T - 25.0 + DT_0)) ** 2
    rs = rho / (t * 1e-7) * (1.0 + T_DEAD / t) * (1.0 + (t / h_c) ** 4)
    return {
        "xi": xi,
        "rate": rate,
        "thickness_nm": t,
        "crystallinity": c,
        "rutile_fraction": r,
        "carrier_density_cm3": n,
        "mobility_cm2_vs": mu,
        "resistivity_ohm_cm": rho,
        "critical_thickness_nm": h_c,
        "sheet_resistance": rs,
    }


def sheet_resistance_arrays(p: Any, T: Any, x: Any, P: Any, d: Any, dopant_name: Any = None) -> np.ndarray:
    """Noise-free sheet resistance (ohm/sq), vectorized."""
    return film_arrays(p, T, x, P, d, dopant_name)["sheet_resistance"]


def _args(recipe: Mapping[str, Any]) -> list[float]:
    missing = [k for k in PARAMETERS if k not in recipe]
    if missing:
        raise KeyError(f"recipe lacks {missing} (needs {list(PARAMETERS)})")
    return [float(recipe[k]) for k in PARAMETERS]


def film(recipe: Mapping[str, Any]) -> Film:
    """The film a recipe produces (noise-free)."""
    out = film_arrays(*_args(recipe), recipe.get(DOPANT_FIELD))
    return Film(**{f: float(out[f]) for f in Film.__dataclass_fields__})


def sheet_resistance(recipe: Mapping[str, Any]) -> float:
    """Noise-free sheet resistance (ohm/sq) of the film a recipe produces."""
    return float(sheet_resistance_arrays(*_args(recipe), recipe.get(DOPANT_FIELD)))


def with_noise(value: float, noise: float, rng: np.random.Generator) -> float:
    """Multiplicative (log-normal) measurement noise: value * exp(N(0, noise)); noise=0.03 is ~3 %."""
    return float(value * math.exp(rng.normal(0.0, noise))) if noise > 0 else float(value)


@dataclass(frozen=True)
class Optimum:
    """The global minimum of the noise-free sheet resistance within a box."""

    recipe: dict[str, float]
    sheet_resistance: float


def from_unit(u: np.ndarray, bounds: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Points of the unit cube (..., 5) -> recipes in ``bounds`` (o2_pressure on a log scale, as the campaign
    searches it)."""
    out = np.empty_like(u)
    for i, (lo, hi) in enumerate(bounds):
        if PARAMETERS[i] == "o2_pressure" and lo > 0:
            out[..., i] = np.exp(np.log(lo) + u[..., i] * (np.log(hi) - np.log(lo)))
        else:
            out[..., i] = lo + u[..., i] * (hi - lo)
    return out


def sample_uniform(
    n: int, rng: np.random.Generator, bounds: Mapping[str, tuple[float, float]] | None = None, log_o2: bool = True
) -> np.ndarray:
    """``n`` uniformly random recipes (rows in PARAMETERS order) in ``bounds`` (default: the campaign box)."""
    box = bounds or CAMPAIGN_BOUNDS
    b = tuple((float(box[k][0]), float(box[k][1])) for k in PARAMETERS)
    u = rng.random((n, len(PARAMETERS)))
    if log_o2:
        return from_unit(u, b)
    return np.array([lo for lo, _ in b]) + u * np.array([hi - lo for lo, hi in b])


@functools.lru_cache(maxsize=8)
def _optimum(bounds: tuple[tuple[float, float], ...]) -> Optimum:
    from scipy.optimize import minimize

    def f(u: np.ndarray) -> float:
        return float(np.log(sheet_resistance_arrays(*from_unit(np.clip(u, 0, 1), bounds))))

    rng = np.random.default_rng(12345)
    u = rng.random((20000, len(PARAMETERS)))
    vals = np.log(sheet_resistance_arrays(*from_unit(u, bounds).T))
    best = None
    for start in u[np.argsort(vals)[:8]]:
        res = minimize(f, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(PARAMETERS))
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    xbest = from_unit(np.clip(best.x, 0, 1), bounds)
    recipe = {k: float(v) for k, v in zip(PARAMETERS, xbest)}
    return Optimum(recipe, float(np.exp(best.fun)))


def optimum(bounds: Mapping[str, tuple[float, float]] | None = None) -> Optimum:
    """Location and value of the global minimum of the noise-free sheet resistance (default: campaign bounds).

    Found numerically (random screen + L-BFGS-B polish from the best starts, in log R_s) and cached.
    """
    b = bounds or CAMPAIGN_BOUNDS
    return _optimum(tuple(tuple(map(float, b[k])) for k in PARAMETERS))


# ------------------------------------------------------------------------------------------ process profile
AR_PRESSURE = 3.0  # mTorr: sputter gas
BASE_PRESSURE = 1e-4  # mTorr (1e-7 Torr)
AFTER_TRANSFER_PRESSURE = 5.0  # mTorr: after the load-lock gate opened
STRIKE_PRESSURE = 12.0  # mTorr: RF plasmas ignite more easily at higher pressure
ROOM_T = 25.0
PUMP_DOWN_S = 180.0
PUMP_TAU_S = 15.0
RAMP_RATE = 30.0  # degC/min heater ramp
SOAK_S = 120.0
STRIKE_S = 30.0
COOL_TAU_S = 480.0
UNLOAD_T = 100.0  # degC: sample is transferred out below this


@dataclass(frozen=True)
class Timeline:
    """Phase boundaries of a recipe in simulated seconds from its start."""

    phases: tuple[tuple[str, float, float], ...]

    @property
    def total(self) -> float:
        return self.phases[-1][2]

    def phase_at(self, t: float) -> tuple[str, float, float]:
        for ph in self.phases:
            if t < ph[2]:
                return ph
        return self.phases[-1]

    def start_of(self, name: str) -> float:
        return next(s for n, s, _ in self.phases if n == name)

    def sample_times(self, interval: float) -> list[float]:
        """When a logger polling every ``interval`` s reports, plus each phase change and the strike peak."""
        ticks = set(np.arange(0.0, self.total, interval).tolist())
        ticks |= {s for _, s, _ in self.phases} | {self.start_of("strike") + 10.0, self.total}
        return sorted(ticks)


def timeline(recipe: Mapping[str, Any]) -> Timeline:
    """Pump-down, heater ramp + soak, plasma strike, deposition (the recipe's duration), cool-down."""
    T = float(recipe["substrate_temperature"])
    ramp = max(0.0, T - ROOM_T) / RAMP_RATE * 60.0 + SOAK_S
    cool = COOL_TAU_S * math.log((T - ROOM_T) / (UNLOAD_T - ROOM_T)) if T > UNLOAD_T else 0.0
    cool += 30.0  # gas purge
    spans = [
        ("pump-down", PUMP_DOWN_S),
        ("ramp", ramp),
        ("strike", STRIKE_S),
        ("deposition", float(recipe["duration"]) * 60.0),
        ("cool-down", cool),
    ]
    phases, t0 = [], 0.0
    for name, span in spans:
        phases.append((name, t0, t0 + span))
        t0 += span
    return Timeline(tuple(phases))


def process_profile(recipe: Mapping[str, Any], t: float) -> dict[str, Any]:
    """Chamber pressure (mTorr, total) and substrate temperature (degC) ``t`` simulated seconds into a recipe.

    Deterministic for a recipe; the steady state carries small, realistic fluctuations (gas-flow control ~1 %,
    heater PID ~0.5 degC, and a plasma-heating overshoot the PID removes within minutes).
    """
    tl = timeline(recipe)
    T_set = float(recipe["substrate_temperature"])
    p_proc = AR_PRESSURE + float(recipe["o2_pressure"])
    P = float(recipe["rf_power"])
    phase, start, _ = tl.phase_at(t)
    tau = max(0.0, t - start)
    if phase == "pump-down":
        pressure = BASE_PRESSURE + (AFTER_TRANSFER_PRESSURE - BASE_PRESSURE) * math.exp(-tau / PUMP_TAU_S)
        temp = ROOM_T
    elif phase == "ramp":
        temp = min(T_set, ROOM_T + RAMP_RATE * tau / 60.0) if T_set >= ROOM_T else T_set
        pressure = BASE_PRESSURE * (1.0 + 4.0 * (temp - ROOM_T) / 500.0)  # heater outgassing
    elif phase == "strike":
        temp = T_set
        pressure = (
            STRIKE_PRESSURE * tau / 10.0
            if tau < 10.0
            else p_proc + (STRIKE_PRESSURE - p_proc) * math.exp(-(tau - 10.0) / 5.0)
        )
    elif phase == "deposition":
        pressure = p_proc * (1.0 + 0.008 * math.sin(tau / 37.0) + 0.004 * math.sin(tau / 11.3 + 1.0))
        overshoot = 0.01 * P * (1.0 - math.exp(-tau / 60.0)) * math.exp(-tau / 300.0)
        temp = T_set + overshoot + 0.5 * math.sin(tau / 53.0)
    else:  # cool-down
        pressure = BASE_PRESSURE + (p_proc - BASE_PRESSURE) * math.exp(-tau / 5.0)
        temp = ROOM_T + (T_set - ROOM_T) * math.exp(-tau / COOL_TAU_S)
    return {"phase": phase, "chamber_pressure": pressure, "substrate_temperature": temp}
