"""Chemical encodings of SMILES categories (labloop.strategy.chem, optional extra labloop[chem]).

RDKit is in the ``test`` extra, so CI exercises the encodings; where it is absent, each test asserts the
missing-RDKit error instead (the path an operator without the extra meets), so that nothing is skipped.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from labloop.errors import LabloopError
from labloop.spec import CampaignSpec, CategoricalParameter, ContinuousParameter, ObjectiveSpec, StrategySpec
from labloop.strategy import make_strategy

if TYPE_CHECKING:  # imported where a space is built: it needs torch, which collecting these tests should not import
    from labloop.strategy.space import SearchSpace
from labloop.strategy.chem import _encode, reduce

LIGANDS = ["CC(C)(C)P(C(C)(C)C)C(C)(C)C", "P(c1ccccc1)(c1ccccc1)c1ccccc1", "CP(C)C", "C1CCC(CC1)P(C1CCCCC1)C1CCCCC1"]


def _rdkit_present() -> bool:
    try:
        import rdkit  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def _space(encoding: str, choices=LIGANDS) -> SearchSpace:
    from labloop.strategy.space import SearchSpace

    return SearchSpace(
        [
            CategoricalParameter(name="ligand", choices=choices, encoding=encoding),
            ContinuousParameter(name="t", lower=0, upper=1),
        ]
    )


@pytest.mark.parametrize("encoding", ["rdkit_descriptors", "morgan_fingerprint"])
def test_smiles_choices_become_scaled_descriptor_features(encoding):
    if not _rdkit_present():
        with pytest.raises(LabloopError, match="RDKit is not installed"):
            _space(encoding)
        return
    space = _space(encoding)
    import torch

    X = torch.tensor([[float(i), 0.5] for i in range(4)], dtype=torch.double)
    F = space.features(X)
    width = F.shape[1] - 1
    assert 1 <= width <= 3  # at most choices - 1 principal components
    assert float(F[:, :width].min()) >= 0 and float(F[:, :width].max()) <= 1
    assert len({tuple(r.tolist()) for r in F[:, :width]}) == 4  # four molecules, four distinct encodings
    assert space.feature_owners()[:width] == ["ligand"] * width


def test_invalid_smiles_is_named_before_anything_runs():
    if not _rdkit_present():
        with pytest.raises(LabloopError, match="RDKit is not installed"):
            _space("rdkit_descriptors", LIGANDS + ["not-a-molecule"])
        return
    _encode.cache_clear()
    with pytest.raises(LabloopError, match=r"'ligand'.*\['not-a-molecule'\] not valid SMILES") as exc:
        _space("rdkit_descriptors", LIGANDS + ["not-a-molecule"])
    assert "one_hot" in exc.value.fix


def test_missing_rdkit_is_a_clear_error_with_the_install_command(monkeypatch):
    _encode.cache_clear()
    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit -> ImportError, as without the extra
    spec = CampaignSpec(
        name="c",
        parameters=[CategoricalParameter(name="ligand", choices=LIGANDS, encoding="morgan_fingerprint")],
        objectives=[ObjectiveSpec(name="y", direction="maximize", plugin="reading")],
        strategy=StrategySpec(),
    )
    with pytest.raises(
        LabloopError,
        match=r"'ligand' asks for encoding 'morgan_fingerprint'.*RDKit is not "
        "installed",
    ) as exc:
        make_strategy(spec)
    assert "labloop[chem]" in exc.value.fix
    _encode.cache_clear()


def test_one_hot_stays_the_default_and_needs_no_rdkit(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    assert CategoricalParameter(name="c", choices=["a", "b"]).encoding == "one_hot"
    space = _space("one_hot", ["not SMILES", "fine"])
    assert space.feature_owners() == ["ligand", "ligand", "t"]


def test_reduce_drops_constant_and_non_finite_columns():
    raw = np.array([[1.0, 5.0, np.nan, 0.0], [2.0, 5.0, 1.0, 1.0], [3.0, 5.0, 2.0, 0.0]])
    out = reduce(raw)
    assert out.shape == (3, 2) and np.isfinite(out).all()
    assert reduce(np.ones((3, 4))).shape == (3, 1)
