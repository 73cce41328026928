r"""Physics of the materials dock: what a profilometer, a UV-vis spectrometer, an X-ray diffractometer and an optical
microscope see of a Nb:TiO2 film made by :mod:`.physics`.

Nothing here knows about devices or time (``dock.py`` wires it to ophyd). Every function takes the film the chamber
wrote to the sample registry (``physics.Film.as_dict()``: thickness, carrier density, mobility, crystallinity, rutile
fraction) and the recipe it was made with (for the oxygen balance xi, the temperature and the cracking thickness,
which :func:`physics.film_arrays` computes from it). A bare substrate (no film) is glass: 0 nm, a clear spectrum, the
glass hump in XRD, a clean image.

Structure (shared by XRD, optics and the microscope)::

    amorphous = 1 - c                  c = crystallinity (physics: sigmoid((T - T_C)/W_C))
    rutile    = c * (1 - (1 - r(T)) * (1 - s_red))      s_red = 0.5 / (1 + (xi / (XI_D/2))^2)
    anatase   = c - rutile

r(T) is physics.py's anatase -> rutile conversion above ~600 degC. s_red adds the rutile inclusions of strongly
reducing growth (xi << XI_D: oxygen-deficient, Ti(3+)-rich films nucleate rutile; the same defects are why
physics.py divides the mobility by 1 + (XI_D/xi)^1.5). So: amorphous below ~330 degC; anatase from ~360 degC
under enough oxygen; rutile above ~620 degC, or with little oxygen.

Grains grow with temperature on physics.py's grain-growth scale, D = D_REF exp((T - T_REF)/T_G), at most the film
thickness (the coherent length along the scattering vector).

**Profilometer** (stylus, step at a masked edge): thickness t plus noise (relative ``noise`` and 1 nm of stylus
noise when the lab has noise).

**UV-vis** (specular transmittance 300-1100 nm, glass substrate n_s = 1.52): the film on a thick transparent
substrate of Swanepoel (J. Phys. E 16, 1214 (1983))::

    T = A x / (B - C x cos(phi) + D x^2),  phi = 4 pi n d / lambda,  x = exp(-alpha d)
    A = 16 n^2 s, B = (n+1)^3 (n+s^2), C = 2 (n^2-1)(n^2-s^2), D = (n-1)^3 (n-s^2)

averaged over a +-3 % thickness spread across the beam (which washes the fringes out at short wavelength, as in
real films). n(lambda) starts from the bulk Cauchy index mixed over the phases (amorphous 2.25, anatase 2.45,
rutile 2.65, + 0.035 um^2 / lambda^2: 2.57 for anatase at 550 nm, as the crystal), then

* dilutes it with the film's voids (Lorentz-Lorenz, (n^2-1)/(n^2+2) = p (n_b^2-1)/(n_b^2+2)): sputtered oxide films
  are not fully dense, packing density p = 0.92 in dense films down to 0.80 in porous zone-1 films (Thornton);
* lowers it by the free electrons (Drude, eps = n^2 - omega_p^2/omega^2, omega_p^2 = n q^2 / eps0 m*): -0.06 at
  550 nm for 1e21 cm^-3.

So a dense, doped anatase film has n(550) ~ 2.3, as measured on sputtered Nb:TiO2 (2.2-2.4; bulk anatase 2.5-2.6).
A transparent film on glass then transmits 0.92 (the bare glass) at its half-wave wavelengths and ~0.70 at its
quarter-wave ones; averaged over 400-800 nm, films ~100-160 nm thick reach 0.80-0.86 and thick ones ~0.75-0.80
before absorption, so transmittance >= 0.80 and a low sheet resistance (which wants thick films) trade off, as for
real TCOs (0.80-0.90 at 10-100 ohm/sq). The absorption coefficient alpha (1/cm) adds

* the band-gap edge: indirect (Tauc) alpha E = B_T (E - E_g)^2, with an Urbach tail of width E_U below the gap
  (smoothly joined: (E_U softplus((E - E_g)/E_U))^2). E_g mixes 3.35 (amorphous), 3.20 (anatase) and 3.02 eV
  (rutile), widened by the Burstein-Moss shift of the free electrons, 0.6 hbar^2 (3 pi^2 n)^(2/3) / 2 m*
  (0.6: band-gap renormalization eats part of it), m* = 1 m_e; E_U is 0.06 eV in crystals, 0.18 eV amorphous;
* free-carrier (Drude) absorption, rising as lambda^2 into the IR for omega tau >> 1:
  alpha = sigma_0 / (eps_0 c n (1 + omega^2 tau^2)), sigma_0 = q n mu, tau = mu m* / q;
* defect (Ti(3+), oxygen vacancy) absorption of reduced films, flat in the visible: A_DEF / (1 + (xi/XI_D)^2);

and the glass's own UV cut-off (~300 nm), and the light the film scatters out of the beam (haze, below). Thicker
films transmit less (more absorption); conducting films lose the near IR; reduced films look gray.

**XRD** (Cu K-alpha, theta-2theta, 20-80 deg in 0.05 deg steps): a constant background, the glass hump (23 deg),
the amorphous-TiO2 hump (27 deg) in proportion to the amorphous fraction, and the powder lines of anatase (101 at
25.28 deg, ICDD 21-1272) and rutile (110 at 27.45 deg, ICDD 21-1276) in proportion to each phase, as
pseudo-Voigt peaks whose width follows Scherrer (K lambda / D cos theta) plus 0.08 deg of the instrument. Intensity
grows linearly with thickness (films are much thinner than the ~18 um X-ray absorption length of TiO2). Counting
statistics (Poisson) when the lab has noise.

**Microscope** (reflected-light bright field, 64 x 64 px over ~200 um): the gray level is the film's reflectance
at 550 nm (Airy interference of the film on glass: it changes with thickness, as films change color), darkened by
absorption; haze (light scattered out of the objective's aperture) darkens and mottles it; channel cracks are dark
lines. Haze is the total integrated scatter of a rough surface, 1 - exp(-(4 pi sigma / lambda)^2), plus what cracks
scatter. The rms roughness sigma grows with thickness (kinetic roughening, sigma ~ t^0.35), with grain size in
crystalline films, and three-fold in porous, under-dense films (Thornton's zone 1: T/T_m below ~0.3, shifted up by
higher sputter pressure). Cracks: the channel-cracking criterion of physics.py, (t/h_c)^4 of the cracking thickness
h_c(T), sets how many cracks cross the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import physics

# ----------------------------------------------------------------------------------------------- structure
D_REF = 25.0  # nm: grain size at physics.T_REF
D_MIN = 3.0  # nm
T_MELT_K = 2116.0  # K: TiO2
ZONE1_TH = 0.30  # T/T_m below which sputtered films are porous (Thornton zone 1)

# ----------------------------------------------------------------------------------------------- optics
N_SUBSTRATE = 1.52  # soda-lime glass
N_PHASE = {"amorphous": 2.25, "anatase": 2.45, "rutile": 2.65}  # bulk refractive index at long wavelength
PACKING_DENSE, PACKING_POROUS = 0.92, 0.80  # solid volume share of dense and of zone-1 sputtered films
CAUCHY_B = 0.035  # um^2
EG_PHASE = {"amorphous": 3.35, "anatase": 3.20, "rutile": 3.02}  # eV
EU_CRYSTAL, EU_AMORPHOUS = 0.06, 0.18  # eV: Urbach widths
B_TAUC = 6e5  # 1/cm * eV: alpha E = B (E - Eg)^2
M_EFF = 1.0  # electron effective mass / m_e
BM_FACTOR = 0.6  # share of the Burstein-Moss shift left after band-gap renormalization
A_DEF = 3e3  # 1/cm: defect absorption of strongly reduced films
THICKNESS_SPREAD = 0.03  # +- relative, across the beam
HC_EV_NM = 1239.84193  # h c in eV nm
WAVELENGTHS = np.arange(300.0, 1100.0 + 1e-9, 2.0)  # nm: the spectrometer's grid

# ----------------------------------------------------------------------------------------------- XRD
CU_KA = 0.15406  # nm
SCHERRER_K = 0.9
INSTRUMENT_FWHM = 0.08  # deg
TWO_THETA = np.round(np.arange(20.0, 80.0 + 1e-9, 0.05), 2)  # deg: the diffractometer's grid
#: (2 theta deg, relative intensity) of the powder lines in 20-80 deg (ICDD 21-1272 anatase, 21-1276 rutile).
ANATASE_LINES = (
    (25.28, 100),
    (37.80, 20),
    (48.05, 35),
    (53.89, 20),
    (55.06, 20),
    (62.69, 14),
    (68.76, 6),
    (70.31, 6),
    (75.03, 10),
)
RUTILE_LINES = ((27.45, 100), (36.09, 50), (41.23, 25), (54.32, 60), (56.64, 20), (62.74, 10), (64.04, 10), (69.01, 20))
PEAK_AREA = 60.0  # counts * deg of a 100-% line per 100 nm of one phase
BACKGROUND = 20.0  # counts
GLASS_HUMP = (23.0, 9.0, 150.0)  # center deg, FWHM deg, height counts
AMORPHOUS_HUMP = (27.0, 8.0, 15.0)  # center, FWHM, height per 100 nm of amorphous film

# ----------------------------------------------------------------------------------------------- microscope
IMAGE_SIZE = 64
FIELD_UM = 200.0
CRACKS_AT_HC = 3.0  # crack lines across the field when t = h_c
MAX_CRACKS = 15
CRACK_SCATTER = 0.02  # haze added per crack line in the field
SIGMA_1 = 1.5  # nm: rms roughness of a 100-nm dense amorphous film
BETA = 0.35  # kinetic roughening exponent


def _sigmoid(z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


# ----------------------------------------------------------------------------------------------- state
def state(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> dict[str, float]:
    """What the dock's physics needs to know of a sample: thickness, carriers, phases, xi, T, grains, h_c."""
    film = dict(film or {})
    t = float(film.get("thickness_nm", 0.0) or 0.0)
    if recipe is not None and all(k in recipe for k in physics.PARAMETERS):
        derived = physics.film_arrays(*(float(recipe[k]) for k in physics.PARAMETERS))
        xi = float(derived["xi"])
        T = float(recipe["substrate_temperature"])
        h_c = float(derived["critical_thickness_nm"])
        p_total = physics.AR_PRESSURE + float(recipe["o2_pressure"])
    else:
        xi, T, h_c, p_total = 1.0, physics.ROOM_T, math.inf, physics.AR_PRESSURE
    c = float(film.get("crystallinity", 0.0) or 0.0) if t > 0 else 0.0
    r_T = float(film.get("rutile_fraction", 0.0) or 0.0)
    s_red = 0.5 / (1.0 + (xi / (physics.XI_D / 2.0)) ** 2)
    rutile = c * (1.0 - (1.0 - r_T) * (1.0 - s_red))
    grain = D_REF * math.exp((T - physics.T_REF) / physics.T_G)
    return {
        "thickness_nm": t,
        "carrier_density_cm3": float(film.get("carrier_density_cm3", 0.0) or 0.0) if t > 0 else 0.0,
        "mobility_cm2_vs": float(film.get("mobility_cm2_vs", 1.0) or 1.0),
        "xi": xi,
        "temperature": T,
        "amorphous": 1.0 - c,
        "anatase": c - rutile,
        "rutile": rutile,
        "grain_nm": float(min(max(grain, D_MIN), max(t, D_MIN))),
        "critical_thickness_nm": h_c,
        "total_pressure": p_total,
    }


def phases(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> dict[str, float]:
    """Volume fractions of the amorphous, anatase and rutile phases (they add up to 1)."""
    s = state(film, recipe)
    return {k: s[k] for k in ("amorphous", "anatase", "rutile")}


def _mix(s: Mapping[str, float], values: Mapping[str, float]) -> float:
    return sum(s[k] * values[k] for k in ("amorphous", "anatase", "rutile"))


# ----------------------------------------------------------------------------------------------- profilometer
def profilometer_thickness(
    film: Mapping[str, Any] | None, rng: np.random.Generator | None = None, noise: float = 0.0
) -> float:
    """Measured step height (nm): the film's thickness, times exp(N(0, noise)), plus N(0, 1 nm) when noisy."""
    t = float((film or {}).get("thickness_nm", 0.0) or 0.0)
    if rng is None or noise <= 0:
        return t
    return physics.with_noise(t, noise, rng) + float(rng.normal(0.0, 1.0))


# ----------------------------------------------------------------------------------------------- optics
def packing_density(s: Mapping[str, float]) -> float:
    """Volume share of solid in the film: PACKING_DENSE for dense sputtered films, down to PACKING_POROUS in
    Thornton's zone 1 (the porous, columnar films of cold, high-pressure growth)."""
    return PACKING_DENSE - (PACKING_DENSE - PACKING_POROUS) * _porosity(s)


def refractive_index(s: Mapping[str, float], wavelength_nm: np.ndarray) -> np.ndarray:
    """The film's index: bulk Cauchy index of its phases, diluted by its voids (Lorentz-Lorenz) and lowered by
    its free electrons (the Drude term of the dielectric function)."""
    lam = np.asarray(wavelength_nm, dtype=float)
    n_bulk = _mix(s, N_PHASE) + CAUCHY_B / (lam / 1000.0) ** 2
    ll = packing_density(s) * (n_bulk**2 - 1.0) / (n_bulk**2 + 2.0)
    eps = (1.0 + 2.0 * ll) / (1.0 - ll)
    q, m_e, eps0, c_light = physics.Q, 9.1093837015e-31, 8.8541878128e-12, 2.99792458e8
    wp2 = s["carrier_density_cm3"] * 1e6 * q**2 / (eps0 * M_EFF * m_e)
    omega = 2.0 * math.pi * c_light / (lam * 1e-9)
    return np.sqrt(np.maximum(eps - wp2 / omega**2, 1.0))


def band_gap(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> float:
    """Optical band gap (eV): the phases' gaps mixed, plus the (renormalized) Burstein-Moss shift."""
    s = state(film, recipe)
    return _band_gap(s)


def _band_gap(s: Mapping[str, float]) -> float:
    hbar, m_e, q = 1.054571817e-34, 9.1093837015e-31, physics.Q
    n_m3 = s["carrier_density_cm3"] * 1e6
    bm = hbar**2 * (3.0 * math.pi**2 * n_m3) ** (2.0 / 3.0) / (2.0 * M_EFF * m_e) / q
    return _mix(s, EG_PHASE) + BM_FACTOR * bm


def absorption(s: Mapping[str, float], wavelength_nm: np.ndarray, n_film: np.ndarray) -> np.ndarray:
    """Absorption coefficient (1/cm): band-gap edge with Urbach tail + Drude free carriers + defects."""
    E = HC_EV_NM / np.asarray(wavelength_nm, dtype=float)
    eg = _band_gap(s)
    eu = s["amorphous"] * EU_AMORPHOUS + (1.0 - s["amorphous"]) * EU_CRYSTAL
    a_gap = B_TAUC / E * (eu * _softplus((E - eg) / eu)) ** 2
    # Drude: sigma_0 / (eps0 c n (1 + (omega tau)^2)), in SI, then 1/m -> 1/cm
    q, m_e, eps0, c_light = physics.Q, 9.1093837015e-31, 8.8541878128e-12, 2.99792458e8
    n_m3 = s["carrier_density_cm3"] * 1e6
    mu = max(s["mobility_cm2_vs"], 1e-3) * 1e-4
    tau = mu * M_EFF * m_e / q
    omega = 2.0 * math.pi * c_light / (np.asarray(wavelength_nm, dtype=float) * 1e-9)
    a_fc = q * n_m3 * mu / (eps0 * c_light * n_film * (1.0 + (omega * tau) ** 2)) / 100.0
    a_def = A_DEF / (1.0 + (s["xi"] / physics.XI_D) ** 2) if s["thickness_nm"] > 0 else 0.0
    return a_gap + a_fc + a_def


def _glass(wavelength_nm: np.ndarray) -> np.ndarray:
    """Internal transmittance of 1 mm soda-lime glass: clear in the visible, cut off below ~310 nm."""
    E = HC_EV_NM / np.asarray(wavelength_nm, dtype=float)
    return np.exp(-np.exp((E - 4.0) / 0.1))


def transmittance(
    film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None, wavelength_nm: np.ndarray = WAVELENGTHS
) -> np.ndarray:
    """Specular transmittance (0..1) of film + glass at each wavelength (nm), noise-free."""
    s = state(film, recipe)
    lam = np.asarray(wavelength_nm, dtype=float)
    n_s = N_SUBSTRATE
    bare = 2.0 * n_s / (n_s**2 + 1.0)
    t = s["thickness_nm"]
    if t <= 0:
        return bare * _glass(lam)
    n = refractive_index(s, lam)
    alpha = absorption(s, lam, n)
    A = 16.0 * n**2 * n_s
    B = (n + 1.0) ** 3 * (n + n_s**2)
    C = 2.0 * (n**2 - 1.0) * (n**2 - n_s**2)
    D = (n - 1.0) ** 3 * (n - n_s**2)
    out = np.zeros_like(lam)
    spread = np.linspace(-THICKNESS_SPREAD, THICKNESS_SPREAD, 7)
    for f in spread:
        d = t * (1.0 + f)
        x = np.exp(-alpha * d * 1e-7)
        phi = 4.0 * math.pi * n * d / lam
        out += A * x / (B - C * x * np.cos(phi) + D * x**2)
    out /= len(spread)
    return out * _glass(lam) * (1.0 - haze(film, recipe, lam))


# ----------------------------------------------------------------------------------------------- surface
def porosity(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> float:
    """Zone-1 (porous, columnar) share of the film: low homologous temperature, raised by sputter pressure."""
    return _porosity(state(film, recipe))


def _porosity(s: Mapping[str, float]) -> float:
    th = (s["temperature"] + 273.15) / T_MELT_K
    limit = ZONE1_TH + 0.02 * math.log(s["total_pressure"] / physics.AR_PRESSURE)
    return float(_sigmoid((limit - th) / 0.015))


def roughness(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> float:
    """rms surface roughness (nm)."""
    s = state(film, recipe)
    t = s["thickness_nm"]
    if t <= 0:
        return 0.5  # polished glass
    crystalline = 1.0 - s["amorphous"]
    return SIGMA_1 * (t / 100.0) ** BETA * (1.0 + 2.0 * porosity(film, recipe)) + 0.1 * s["grain_nm"] * crystalline


def cracks(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> int:
    """Channel cracks crossing the microscope's field: CRACKS_AT_HC (t/h_c)^4, at most MAX_CRACKS."""
    s = state(film, recipe)
    if s["thickness_nm"] <= 0 or not math.isfinite(s["critical_thickness_nm"]):
        return 0
    g = (s["thickness_nm"] / s["critical_thickness_nm"]) ** 4
    return int(min(MAX_CRACKS, math.floor(CRACKS_AT_HC * g + 0.5)))


def haze(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None, wavelength_nm: Any = 550.0) -> Any:
    """Share of the light scattered out of the specular beam: total integrated scatter of the roughness, plus the
    cracks' scatter."""
    sigma = roughness(film, recipe)
    lam = np.asarray(wavelength_nm, dtype=float)
    tis = 1.0 - np.exp(-((4.0 * math.pi * sigma / lam) ** 2))
    out = np.minimum(0.95, tis + CRACK_SCATTER * cracks(film, recipe))
    return float(out) if out.ndim == 0 else out


def reflectance_550(film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> float:
    """Specular reflectance at 550 nm (Airy sum of a film on glass), lowered by the film's absorption."""
    s = state(film, recipe)
    lam = np.array([550.0])
    n_s = N_SUBSTRATE
    if s["thickness_nm"] <= 0:
        return ((n_s - 1.0) / (n_s + 1.0)) ** 2
    n = float(refractive_index(s, lam)[0])
    alpha = float(absorption(s, lam, np.array([n]))[0])
    x = math.exp(-alpha * s["thickness_nm"] * 1e-7)
    r1, r2 = (1.0 - n) / (1.0 + n), (n - n_s) / (n + n_s)
    phi = 4.0 * math.pi * n * s["thickness_nm"] / 550.0
    r2x = r2 * x
    return (r1**2 + r2x**2 + 2 * r1 * r2x * math.cos(phi)) / (1 + r1**2 * r2x**2 + 2 * r1 * r2x * math.cos(phi))


def micrograph(
    film: Mapping[str, Any] | None,
    recipe: Mapping[str, Any] | None,
    rng: np.random.Generator,
    noise: float = 0.0,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """A bright-field image (size x size, gray levels 0..1). Texture and crack positions come from ``rng``."""
    from scipy.ndimage import gaussian_filter

    h = float(haze(film, recipe))
    base = min(0.95, 0.15 + 2.2 * reflectance_550(film, recipe)) * (1.0 - 0.5 * h)
    texture = gaussian_filter(rng.normal(size=(size, size)), 2.0)
    texture /= texture.std() or 1.0
    img = base * (1.0 + 1.2 * h * texture)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    for _ in range(cracks(film, recipe)):
        angle = rng.uniform(0.0, math.pi)
        cx, cy = rng.uniform(0, size, 2)
        dist = np.abs((xx - cx) * math.sin(angle) - (yy - cy) * math.cos(angle))
        img *= 1.0 - 0.85 * np.exp(-((dist / 0.7) ** 2))
    if noise > 0:
        img = img + rng.normal(0.0, 0.01, img.shape)
    return np.clip(img, 0.0, 1.0)


def image_metrics(img: np.ndarray) -> dict[str, float]:
    """What the microscope's analysis reports of an image: crack-pixel fraction and the texture contrast
    (std / mean of the pixels outside cracks) that haze raises."""
    med = float(np.median(img))
    crack = img < 0.6 * med
    rest = img[~crack] if (~crack).any() else img
    return {"crack_fraction": float(crack.mean()), "contrast": float(rest.std() / max(rest.mean(), 1e-9))}


# ----------------------------------------------------------------------------------------------- XRD
def _pseudo_voigt(x: np.ndarray, center: float, fwhm: float, area: float, eta: float = 0.5) -> np.ndarray:
    g = math.sqrt(4.0 * math.log(2.0) / math.pi) / fwhm * np.exp(-4.0 * math.log(2.0) * (x - center) ** 2 / fwhm**2)
    lor = (2.0 / (math.pi * fwhm)) / (1.0 + 4.0 * (x - center) ** 2 / fwhm**2)
    return area * (eta * lor + (1.0 - eta) * g)


def scherrer_fwhm(two_theta: float, grain_nm: float) -> float:
    """Peak width (deg 2 theta): Scherrer's size broadening added in quadrature to the instrument's."""
    theta = math.radians(two_theta / 2.0)
    size = math.degrees(SCHERRER_K * CU_KA / (grain_nm * math.cos(theta)))
    return math.hypot(size, INSTRUMENT_FWHM)


def xrd_pattern(
    film: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None, two_theta: np.ndarray = TWO_THETA
) -> np.ndarray:
    """Expected counts at each 2 theta (deg), noise-free."""
    s = state(film, recipe)
    x = np.asarray(two_theta, dtype=float)
    per100 = s["thickness_nm"] / 100.0

    def hump(center: float, fwhm: float, height: float) -> np.ndarray:
        return height * np.exp(-4.0 * math.log(2.0) * (x - center) ** 2 / fwhm**2)

    out = BACKGROUND * (1.0 + 10.0 / x) + hump(*GLASS_HUMP)
    c, w, hgt = AMORPHOUS_HUMP
    out = out + hump(c, w, hgt * per100 * s["amorphous"])
    for phase, lines in (("anatase", ANATASE_LINES), ("rutile", RUTILE_LINES)):
        if s[phase] <= 0:
            continue
        for pos, rel in lines:
            out = out + _pseudo_voigt(
                x, pos, scherrer_fwhm(pos, s["grain_nm"]), PEAK_AREA * per100 * s[phase] * rel / 100.0
            )
    return out


def main_peak(
    two_theta: np.ndarray, counts: np.ndarray, window: tuple[float, float] = (22.0, 32.0), min_height: float = 5.0
) -> float:
    """Position (deg) of the strongest sharp peak in ``window`` above a wide-median baseline; NaN when no peak
    stands ``min_height`` standard deviations (of counting noise) above it."""
    from scipy.ndimage import median_filter

    x = np.asarray(two_theta, dtype=float)
    y = np.asarray(counts, dtype=float)
    step = float(np.median(np.diff(x)))
    baseline = median_filter(y, size=max(3, int(round(4.0 / step)) | 1), mode="nearest")
    resid = y - baseline
    sel = (x >= window[0]) & (x <= window[1])
    if not sel.any():
        return math.nan
    i = int(np.argmax(np.where(sel, resid, -np.inf)))
    if resid[i] < min_height * math.sqrt(max(baseline[i], 1.0)):
        return math.nan
    return float(x[i])


def band_edge_ev(wavelength_nm: np.ndarray, transmittance_values: np.ndarray, level: float = 0.1) -> float:
    """Photon energy (eV) at which the transmittance, coming from the visible, first falls below ``level``: a
    quick absorption-edge estimate (NaN when it never does)."""
    lam = np.asarray(wavelength_nm, dtype=float)
    T = np.asarray(transmittance_values, dtype=float)
    order = np.argsort(lam)[::-1]  # from long to short wavelength
    for i in order:
        if lam[i] < 1000.0 and T[i] < level:
            return float(HC_EV_NM / lam[i])
    return math.nan
