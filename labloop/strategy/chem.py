"""Chemical encodings of categorical parameters given as SMILES (``encoding:`` of a categorical parameter).

Why: one-hot makes every ligand, base or solvent equally unlike every other, so the GP learns nothing about an
untried ligand from its tried relatives. Molecular descriptors place choices by their chemistry (size, polarity,
charge, ring systems), so similar molecules get similar predictions (the idea behind EDBO, Shields et al. 2021,
and BayBE's substance parameters). Two encodings, computed with RDKit (optional extra ``labloop[chem]``):

* ``rdkit_descriptors``: RDKit's 2-D descriptor set (``Descriptors.CalcMolDescriptors``, about 200 numbers);
* ``morgan_fingerprint``: Morgan (ECFP4-like) bits, radius 2, 1024 bits.

Either way the raw columns are cleaned (non-finite and constant columns dropped), standardized and reduced by PCA to
at most ``MAX_COMPONENTS`` (and at most ``choices - 1``) components: a GP with an ARD lengthscale per raw descriptor
would fit 200 lengthscales from 22 molecules; a few principal components keep most of the spread. The result is a
descriptor table per choice, used exactly like user-given ``descriptors`` (min-max scaled, :mod:`.space`).

Bad input is refused when the search space is built (before any experiment runs): RDKit missing, a choice that is
not a valid SMILES string.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from labloop.errors import LabloopError

MAX_COMPONENTS = 8
ENCODINGS = ("rdkit_descriptors", "morgan_fingerprint")


def _rdkit(param: str, encoding: str):
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise LabloopError(
            f"parameter '{param}' asks for encoding '{encoding}', which needs RDKit, and RDKit is not installed",
            "install the chemistry extra (pip install 'labloop[chem]') or use encoding 'one_hot'",
        ) from None
    # invalid SMILES are reported below, by name, not as RDKit's log lines
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # from RDKit's C extension, unseen by mypy
    return Chem


def _raw(Chem, mols: list, encoding: str) -> np.ndarray:
    if encoding == "rdkit_descriptors":
        from rdkit.Chem import Descriptors

        rows = [Descriptors.CalcMolDescriptors(m) for m in mols]
        names = sorted(rows[0])
        return np.array([[float(r.get(n, np.nan)) for n in names] for r in rows], dtype=float)
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return np.array([gen.GetFingerprintAsNumPy(m) for m in mols], dtype=float)


def reduce(raw: np.ndarray, max_components: int = MAX_COMPONENTS) -> np.ndarray:
    """Drop non-finite and constant columns, standardize, and keep the leading principal components."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(raw).all(0) & (np.abs(raw) < 1e12).all(0)
        X = raw[:, ok]
        X = X[:, X.std(0) > 1e-12]
    if X.shape[1] == 0:
        return np.zeros((len(raw), 1))
    X = (X - X.mean(0)) / X.std(0)
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    k = max(1, min(max_components, len(raw) - 1, int((S > 1e-9 * S[0]).sum())))
    return U[:, :k] * S[:k]


@lru_cache(maxsize=64)
def _encode(param: str, choices: tuple[str, ...], encoding: str) -> tuple[tuple[float, ...], ...]:
    Chem = _rdkit(param, encoding)
    mols, bad = [], []
    for c in choices:
        m = Chem.MolFromSmiles(c)
        (bad.append(c) if m is None else mols.append(m))
    if bad:
        raise LabloopError(
            f"parameter '{param}' (encoding '{encoding}'): {bad} not valid SMILES",
            "correct the SMILES strings, or use encoding 'one_hot' for choices that are not molecules",
        )
    return tuple(tuple(float(v) for v in row) for row in reduce(_raw(Chem, mols, encoding)))


def descriptors(param: str, choices: list[str], encoding: str) -> dict[str, list[float]]:
    """Descriptor vector per choice (SMILES) of a categorical parameter, for ``encoding`` (see module doc)."""
    if encoding not in ENCODINGS:
        raise LabloopError(
            f"parameter '{param}': unknown encoding '{encoding}'", f"use one of: one_hot, {', '.join(ENCODINGS)}"
        )
    rows = _encode(param, tuple(choices), encoding)
    return {c: list(r) for c, r in zip(choices, rows)}
