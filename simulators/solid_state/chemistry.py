r"""Reaction model of a solid-state synthesis of spinel LiMn2O4: recipe + thermal history -> phase fractions.

Nothing here knows about devices or time; the furnace (``furnace.py``) integrates the actual temperature history
and calls :func:`react`. The model is phenomenological, built the way synthesis-planning work reasons about
powder reactions, with constants chosen so the numbers land where real LiMn2O4 syntheses do (single-phase spinel
from ~750-850 degC for hours in air; oxygen loss above ~870 degC; reduced phases in inert gas):

* **Pairwise reactions and intermediates** (Bianchini et al., Nat. Mater. 19, 1088 (2020); Szymanski et al.,
  ARROWS3, Nat. Commun. 14, 6956 (2023)): the precursor pair reacts first; at low temperature a Li-rich
  intermediate (Li2MnO3) forms where a molten or very mobile Li salt floods the Mn grains. It is stable: the
  driving force left for Li2MnO3 + Mn2O3 -> LiMn2O4 is small, so its conversion is slow (high activation energy)
  and the route is *trapped* below ~900 degC, where the target already decomposes.
* **Diffusion-limited kinetics** (Jander, Z. anorg. allg. Chem. 163, 1 (1927)): precursor conversion alpha follows
  ``[1 - (1 - alpha)^(1/3)]^2 = z``, ``z = integral k(T(t)) dt``, ``k = k_ref / r^2 * exp(-E/R (1/T - 1/T_ref))``
  gated by the pair's onset (Hedvall/Tammann: reaction starts once a precursor melts or decomposes, or at ~2/3 of
  the melting point in kelvin for refractory ones). Finer milling (smaller particle radius r) is faster.
  The later steps (intermediate -> target, target decomposition, reduction) are first order (Avrami n = 1).
* **Off-stoichiometry** splits the reacted product by the lever rule: Li excess -> LiMn2O4 + Li2MnO3, Li deficit
  -> LiMn2O4 + Mn2O3.
* **Atmosphere**: LiMn2O4 loses oxygen above ~870 degC in air (-> Li2MnO3 + Mn3O4; Thackeray, Prog. Solid State
  Chem. 25, 1 (1997)); O2 shifts that up, N2/Ar down and also reduce the spinel to LiMnO2 + Mn3O4. Mn3O4 as a
  precursor must oxidize first and reacts slowly without oxygen.
* **Milling** grinds the particles (r = r_inf + (r_0 - r_inf) exp(-t/tau)) and wears the ZrO2 media: a small ZrO2
  impurity grows with milling time, so milling forever is not free.
* **Crystallite growth** ``D^2 = D_0^2 + K integral exp(-Q/R (1/T - 1/T_ref)) dt`` gives the size the XRD broadens by.

Phase fractions are on a cation basis (the share of all metal atoms held in each phase), so they sum to 1 and the
Li and Mn balances can be checked exactly (tests/test_solid_state_sim.py). Unreacted Mn is reported as Mn2O3
once the firing passed its precursor's decomposition temperature (merged with Mn2O3 made by the reactions). Precursor
descriptors are handbook-like values (melting / decomposition temperatures, degC); the reactivity and the
intermediate factors are invented. A fast ramp crosses the intermediate's window before much reacts, so it helps
the trapped routes (LiNO3 + MnO2 at 800 degC, 8 h: 0.66 target at 1 degC/min, 0.83 at 20 degC/min).

The landscape is multi-modal by construction: each precursor pair has its own onset, intermediate affinity and
therefore its own best temperature/dwell/ramp/atmosphere; routes with a molten Li salt trap in Li2MnO3 unless
ramped fast and fired hot; the refractory Li2O + Mn3O4 route hardly reacts below the decomposition temperature.
Over :data:`SEARCH_SPACE`, 0.8 % of 1000 uniformly random recipes reach a target fraction >= 0.9 (3.5 % >= 0.8;
seed 0), while per-route Nelder-Mead finds ~0.98 (Li2O + MnO2 or MnCO3 in O2 at ~835-840 degC, 15-18 h, ratio 1.0).
The ratio optimum is exactly stoichiometric because Li volatilization is not modelled (real labs add 3-10 % Li).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

R_GAS = 8.314
TARGET = "LiMn2O4"


@dataclass(frozen=True)
class Precursor:
    """A precursor powder and the descriptors the model (and an optimizer's encoding) uses."""

    name: str
    element: str  # "Li" or "Mn": the cation it supplies
    cations: int  # cations of that element per formula unit
    molar_mass: float  # g/mol
    melting_c: float  # degC (a refractory's real melting point; salts melt low)
    decomposition_c: float  # degC at which it decomposes to a fresh, reactive oxide
    reactivity: float  # relative surface reactivity (invented, 0..1)
    needs_oxygen: bool = False  # a reduced oxide that must oxidize before it forms the target

    @property
    def activation_c(self) -> float:
        """Where it becomes mobile: melts or decomposes; a refractory one at Tammann's 2/3 of T_melt (K)."""
        t = min(self.melting_c, self.decomposition_c)
        return t if t <= 900 else (self.melting_c + 273.15) * 2 / 3 - 273.15


PRECURSORS: dict[str, Precursor] = {
    p.name: p
    for p in (
        Precursor("Li2CO3", "Li", 2, 73.89, 723, 1310, 0.6),
        Precursor("LiOH", "Li", 1, 23.95, 462, 924, 1.0),
        Precursor("LiNO3", "Li", 1, 68.95, 255, 600, 0.9),
        Precursor("Li2O", "Li", 2, 29.88, 1438, 1600, 0.5),
        Precursor("MnO2", "Mn", 1, 86.94, 1600, 535, 0.8),
        Precursor("Mn2O3", "Mn", 2, 157.87, 1600, 940, 0.7),
        Precursor("MnCO3", "Mn", 1, 114.95, 1600, 350, 0.9),
        Precursor("Mn3O4", "Mn", 3, 228.81, 1567, 1600, 0.5, needs_oxygen=True),
    )
}
LI_SOURCES = tuple(n for n, p in PRECURSORS.items() if p.element == "Li")
MN_SOURCES = tuple(n for n, p in PRECURSORS.items() if p.element == "Mn")
ATMOSPHERES = ("air", "O2", "N2", "Ar")

# product phases: (Li, Mn, Zr) cations per formula unit, and what they are
PHASES: dict[str, tuple[tuple[int, int, int], str]] = {
    "LiMn2O4": ((1, 2, 0), "target"),
    "Li2MnO3": ((2, 1, 0), "intermediate"),
    "Mn2O3": ((0, 2, 0), "impurity"),
    "Mn3O4": ((0, 3, 0), "impurity"),
    "LiMnO2": ((1, 1, 0), "impurity"),
    "ZrO2": ((0, 0, 1), "impurity"),
}

# the box a campaign searches (continuous bounds; categorical choices above)
SEARCH_SPACE = {
    "ratio": (0.8, 1.3),
    "milling_min": (0.0, 240.0),
    "ramp_c_per_min": (1.0, 20.0),
    "peak_c": (500.0, 1000.0),
    "dwell_h": (1.0, 24.0),
}

# model constants (see the module docstring)
T_REF_K = 1073.15
E_DIRECT, K_DIRECT = 200e3, 1 / (6 * 3600)  # precursor pair, Jander, at 800 degC and r = 1 um
E_CONVERT, K_CONVERT = 350e3, 1 / (10 * 3600)  # Li2MnO3 + Mn2O3 -> LiMn2O4, at 900 degC
E_DECOMP, K_DECOMP = 300e3, 1 / (5 * 3600)  # LiMn2O4 -> Li2MnO3 + Mn3O4, at 900 degC
E_REDUCE, K_REDUCE = 150e3, 1 / (4 * 3600)  # LiMn2O4 -> LiMnO2 + Mn3O4 in N2/Ar, at 800 degC
T_INTERMEDIATE = 720.0  # below it a mobile Li salt makes Li2MnO3 rather than the spinel
DECOMP_ONSET = {"air": 870.0, "O2": 920.0, "N2": 800.0, "Ar": 790.0}
REDUCING = {"air": 0.0, "O2": 0.0, "N2": 1.0, "Ar": 1.3}
OXIDIZING = {"air": 0.35, "O2": 1.0, "N2": 0.15, "Ar": 0.1}  # how well a reduced precursor oxidizes
R0_UM, RINF_UM, TAU_MILL_MIN = 5.0, 0.4, 40.0
ZRO2_PER_MIN = 1.5e-4
D0_NM, K_GROWTH, Q_GROWTH = 15.0, 0.17, 250e3
DT_MAX_S = 300.0


@dataclass(frozen=True)
class Recipe:
    """What the chemist chooses: precursors, Li/Mn ratio (1.0 = stoichiometric 1:2), milling, firing profile."""

    li_source: str = "Li2CO3"
    mn_source: str = "MnO2"
    ratio: float = 1.0  # (Li/Mn) / 0.5
    milling_min: float = 60.0
    ramp_c_per_min: float = 5.0
    peak_c: float = 800.0
    dwell_h: float = 8.0
    atmosphere: str = "air"

    def __post_init__(self):
        if self.li_source not in LI_SOURCES or self.mn_source not in MN_SOURCES:
            raise ValueError(
                f"unknown precursor pair {self.li_source!r} + {self.mn_source!r}; "
                f"Li sources {LI_SOURCES}, Mn sources {MN_SOURCES}"
            )
        if self.atmosphere not in ATMOSPHERES:
            raise ValueError(f"unknown atmosphere {self.atmosphere!r}; use one of {ATMOSPHERES}")
        if not (
            0.5 <= self.ratio <= 2.0
            and self.milling_min >= 0
            and self.ramp_c_per_min > 0
            and 25 <= self.peak_c <= 1200
            and self.dwell_h >= 0
        ):
            raise ValueError(f"recipe out of the model's range: {self}")


@dataclass
class Product:
    """Phase fractions (cation basis, sum 1) plus what XRD needs (crystallite size)."""

    fractions: dict[str, float]
    kinds: dict[str, str]
    crystallite_nm: float
    li_mn_in: tuple[float, float] = field(default=(0.0, 0.0))  # cation shares of Li and Mn in the charge

    @property
    def target(self) -> float:
        return self.fractions.get(TARGET, 0.0)

    def share(self, kind: str) -> float:
        return sum(f for p, f in self.fractions.items() if self.kinds[p] == kind)


def particle_radius_um(milling_min: float) -> float:
    return RINF_UM + (R0_UM - RINF_UM) * math.exp(-milling_min / TAU_MILL_MIN)


def setpoint_history(
    recipe: Recipe, cool_tau_h: float = 3.0, ambient_c: float = 25.0, dt_s: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """An ideal furnace's history: ramp at the set rate, dwell, Newtonian cooling to < 200 degC."""
    ramp_s = max(0.0, recipe.peak_c - ambient_c) / recipe.ramp_c_per_min * 60
    dwell_s = recipe.dwell_h * 3600
    cool_s = cool_tau_h * 3600 * math.log(max(1.0001, (recipe.peak_c - ambient_c) / (200 - ambient_c)))
    t = np.arange(0.0, ramp_s + dwell_s + cool_s + dt_s, dt_s)
    temp = np.where(t < ramp_s, ambient_c + t / max(ramp_s, 1e-9) * (recipe.peak_c - ambient_c), recipe.peak_c)
    after = t > ramp_s + dwell_s
    temp[after] = ambient_c + (recipe.peak_c - ambient_c) * np.exp(-(t[after] - ramp_s - dwell_s) / (cool_tau_h * 3600))
    return t, temp


def _arrhenius(t_k: float, e: float, t_ref_k: float) -> float:
    return math.exp(-e / R_GAS * (1 / t_k - 1 / t_ref_k))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, x))))


def react(recipe: Recipe, times_s, temps_c) -> Product:
    """Integrate the reactions over an actual temperature history (``times_s`` increasing, ``temps_c`` degC)."""
    li, mn = PRECURSORS[recipe.li_source], PRECURSORS[recipe.mn_source]
    li0 = recipe.ratio * 0.5
    li_share, mn_share = li0 / (1 + li0), 1 / (1 + li0)
    zr = min(0.2, ZRO2_PER_MIN * recipe.milling_min)
    # atoms on a total-cation basis: Li, Mn (unreacted), and product formula units
    p_li, p_mn = li_share * (1 - zr), mn_share * (1 - zr)
    n = dict.fromkeys(PHASES, 0.0)
    n["ZrO2"] = zr
    r = particle_radius_um(recipe.milling_min)
    onset = 0.5 * (li.activation_c + mn.activation_c)
    psi0 = min(0.9, max(0.1, 1 - (li.activation_c - 250) / 700)) * (0.5 if mn.needs_oxygen else 1.0)
    k_pair = K_DIRECT * li.reactivity * mn.reactivity / 0.48 / r**2
    if mn.needs_oxygen:
        k_pair *= OXIDIZING[recipe.atmosphere]
    z, alpha, growth = 0.0, 0.0, 0.0
    times = np.asarray(times_s, dtype=float)
    temps = np.asarray(temps_c, dtype=float)
    for i in range(1, len(times)):
        span = times[i] - times[i - 1]
        steps = max(1, int(math.ceil(span / DT_MAX_S)))
        for j in range(steps):
            t_c = temps[i - 1] + (temps[i] - temps[i - 1]) * (j + 0.5) / steps
            if t_c < 250:
                continue
            dt = span / steps
            t_k = t_c + 273.15
            growth += K_GROWTH * _arrhenius(t_k, Q_GROWTH, T_REF_K) * dt
            # 1. the precursor pair (Jander), split between the direct and the intermediate pathway
            z += k_pair * _arrhenius(t_k, E_DIRECT, T_REF_K) * _sigmoid((t_c - onset) / 40) * dt
            new_alpha = 1 - (1 - min(1.0, math.sqrt(z))) ** 3
            if new_alpha > alpha and (p_li > 0 and p_mn > 0):
                frac = (new_alpha - alpha) / (1 - alpha) if alpha < 1 else 1.0
                d_li, d_mn = p_li * frac, p_mn * frac
                p_li -= d_li
                p_mn -= d_mn
                psi = psi0 * _sigmoid((T_INTERMEDIATE - t_c) / 40)
                # intermediate pathway: all its Li into Li2MnO3, the rest of its Mn stays as Mn2O3
                n["Li2MnO3"] += psi * d_li / 2
                n["Mn2O3"] += psi * (d_mn - d_li / 2) / 2
                _lever(n, (1 - psi) * d_li, (1 - psi) * d_mn)
            alpha = new_alpha
            # 2. Li2MnO3 + 3/2 Mn2O3 -> 2 LiMn2O4: small driving force, slow
            k3 = K_CONVERT * _arrhenius(t_k, E_CONVERT, 1173.15) / r
            x = min(n["Li2MnO3"], n["Mn2O3"] * 2 / 3) * (1 - math.exp(-k3 * dt))
            n["Li2MnO3"] -= x
            n["Mn2O3"] -= 1.5 * x
            n["LiMn2O4"] += 2 * x
            # 3. the spinel loses oxygen when hot: LiMn2O4 -> 1/2 Li2MnO3 + 1/2 Mn3O4
            k4 = K_DECOMP * _arrhenius(t_k, E_DECOMP, 1173.15) * _sigmoid((t_c - DECOMP_ONSET[recipe.atmosphere]) / 15)
            x = n["LiMn2O4"] * (1 - math.exp(-k4 * dt))
            n["LiMn2O4"] -= x
            n["Li2MnO3"] += x / 2
            n["Mn3O4"] += x / 2
            # 4. inert gas reduces it: LiMn2O4 -> LiMnO2 + 1/3 Mn3O4
            k5 = K_REDUCE * REDUCING[recipe.atmosphere] * _arrhenius(t_k, E_REDUCE, T_REF_K)
            x = n["LiMn2O4"] * (1 - math.exp(-k5 * dt))
            n["LiMn2O4"] -= x
            n["LiMnO2"] += x
            n["Mn3O4"] += x / 3
    fractions = {p: n[p] * sum(PHASES[p][0]) for p in PHASES}
    kinds = {p: PHASES[p][1] for p in PHASES}
    fractions[li.name] = p_li
    kinds[li.name] = "unreacted"
    peak = float(temps.max()) if len(temps) else 25.0
    mn_left = "Mn2O3" if (peak > mn.decomposition_c and mn.name != "Mn3O4") else mn.name
    fractions[mn_left] = fractions.get(mn_left, 0.0) + p_mn
    kinds.setdefault(mn_left, "unreacted")
    if mn.name == "Mn2O3":
        kinds["Mn2O3"] = "unreacted"
    total = sum(fractions.values())
    fractions = {p: max(0.0, f / total) for p, f in fractions.items()}
    return Product(fractions, kinds, math.sqrt(D0_NM**2 + growth), (li_share, mn_share))


def _lever(n: dict, d_li: float, d_mn: float) -> None:
    """Direct pathway: LiMn2O4 plus whatever the off-stoichiometric excess forms (lever rule)."""
    if d_li <= d_mn / 2:
        n["LiMn2O4"] += d_li
        n["Mn2O3"] += (d_mn - 2 * d_li) / 2
    else:  # Li excess: LiMn2O4 + Li2MnO3 (Li = t + 2i, Mn = 2t + i)
        n["LiMn2O4"] += (2 * d_mn - d_li) / 3
        n["Li2MnO3"] += (2 * d_li - d_mn) / 3


def element_shares(product: Product) -> tuple[float, float, float]:
    """(Li, Mn, Zr) cation shares held in all phases together: what mass conservation checks."""
    out = [0.0, 0.0, 0.0]
    for phase, f in product.fractions.items():
        if phase in PHASES:
            comp = PHASES[phase][0]
        else:
            p = PRECURSORS[phase]
            comp = (1, 0, 0) if p.element == "Li" else (0, 1, 0)
        for k in range(3):
            out[k] += f * comp[k] / sum(comp)
    return tuple(out)


def fire(recipe: Recipe) -> Product:
    """The product of a recipe fired on an ideal furnace (setpoint history); the furnace gives the actual one."""
    t, temp = setpoint_history(recipe)
    return react(recipe, t, temp)


def precursor_masses(recipe: Recipe, target_mmol: float = 5.0) -> dict[str, float]:
    """Grams of each precursor for ``target_mmol`` of LiMn2O4 at the recipe's Li/Mn ratio."""
    li, mn = PRECURSORS[recipe.li_source], PRECURSORS[recipe.mn_source]
    mn_mol = 2 * target_mmol / 1000
    li_mol = mn_mol * 0.5 * recipe.ratio
    return {li.name: li_mol / li.cations * li.molar_mass, mn.name: mn_mol / mn.cations * mn.molar_mass}
