import numpy as np
import pytest

from barista import reference
from barista.errors import DataError


def test_parse_contact():
    assert reference.parse_contact("LA12") == ("LA", 12)
    assert reference.parse_contact("RHH01") == ("RHH", 1)
    assert reference.parse_contact("EKG") is None
    assert reference.parse_contact("12") is None


def test_laplacian_drops_contacts_without_both_neighbours():
    names = ["LA1", "LA2", "LA3", "LA4", "LB1", "LB2", "LB4", "LB5", "LB6"]
    derivs = reference.laplacian(names)
    assert [d.name for d in derivs] == ["LA2", "LA3", "LB5"]
    assert derivs[0].weights == {"LA2": 1.0, "LA1": -0.5, "LA3": -0.5}


def test_laplacian_values_and_zero_padding():
    names = ["A01", "A02", "A03"]
    data = np.array([[1.0, 2.0], [5.0, 7.0], [3.0, 0.0]])
    out = reference.apply(data, names, reference.laplacian(names))
    np.testing.assert_allclose(out, [[5 - 2, 7 - 1]])


def test_bipolar_names_values_and_anchor():
    names = ["LA1", "LA2", "LA3"]
    data = np.array([[1.0], [4.0], [10.0]])
    derivs = reference.bipolar(names)
    assert [(d.name, d.anchor) for d in derivs] == [("LA1-LA2", "LA1"), ("LA2-LA3", "LA2")]
    np.testing.assert_allclose(reference.apply(data, names, derivs), [[-3.0], [-6.0]])


def test_car_removes_the_common_signal():
    rng = np.random.default_rng(0)
    common = rng.standard_normal(100)
    data = rng.standard_normal((4, 100)) + common
    names = ["A1", "A2", "B1", "B2"]
    out = reference.apply(data, names, reference.derivations(names, "car"))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out, data - data.mean(axis=0))


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown re-reference"):
        reference.derivations(["A1"], "average")


def grid(rows: int, cols: int, spacing: float = 10.0, prefix: str = "G"):
    """Contact names numbered row by row and their positions (mm) on a flat grid."""
    names, pos = [], {}
    for r in range(rows):
        for c in range(cols):
            name = f"{prefix}{r * cols + c + 1}"
            names.append(name)
            pos[name] = np.array([c * spacing, r * spacing, 40.0])
    return names, pos


def test_laplacian_of_an_ecog_grid_stays_within_rows():
    """A 4 x 4 grid numbered by rows: G4's next number, G5, starts the next row 32 mm away;
    a row-end contact has one neighbour only and is dropped, as at a shaft's ends."""
    names, pos = grid(4, 4)
    types = dict.fromkeys(names, "ecog")
    derivs = reference.laplacian(names, pos, types)
    assert [d.name for d in derivs] == ["G2", "G3", "G6", "G7", "G10", "G11", "G14", "G15"]
    assert derivs[0].weights == {"G2": 1.0, "G1": -0.5, "G3": -0.5}
    pairs = [d.name for d in reference.bipolar(names, pos, types)]
    assert "G4-G5" not in pairs and "G8-G9" not in pairs and len(pairs) == 12


def test_two_column_grid_diagonal_is_not_a_neighbour():
    """In a 2-column grid the row-end step is a diagonal, 1.41 spacings long."""
    names, pos = grid(4, 2)
    types = dict.fromkeys(names, "ecog")
    assert reference.laplacian(names, pos, types) == []
    assert [d.name for d in reference.bipolar(names, pos, types)] == [
        "G1-G2", "G3-G4", "G5-G6", "G7-G8"]


def test_depth_shaft_with_positions_keeps_its_neighbours_but_not_a_gap():
    """Depth contacts 3.5 mm apart with localisation jitter keep both neighbours; a contact
    displaced 15 mm (or a gap in the shaft) is nobody's neighbour."""
    rng = np.random.default_rng(0)
    names = [f"LA{i}" for i in range(1, 9)]
    pos = {n: np.array([-20 - 3.5 * i, 5.0, 10.0]) + rng.normal(0, 0.3, 3)
           for i, n in enumerate(names)}
    types = dict.fromkeys(names, "seeg")
    assert [d.name for d in reference.laplacian(names, pos, types)] == names[1:-1]
    pos["LA5"] = pos["LA5"] + np.array([0.0, 15.0, 0.0])
    assert [d.name for d in reference.laplacian(names, pos, types)] == ["LA2", "LA3", "LA7"]


def test_ecog_without_positions_is_refused_and_depth_without_positions_is_not():
    names = [f"G{i}" for i in range(1, 9)] + ["LA1", "LA2", "LA3"]
    types = {n: "ecog" if n.startswith("G") else "seeg" for n in names}
    for scheme in ("laplacian", "bipolar"):
        with pytest.raises(DataError, match="ECoG contacts") as err:
            reference.derivations(names, scheme, {}, types)
        assert "'G1'" in str(err.value) and "preprocess.reference" in str(err.value)
    depth = [n for n in names if n.startswith("LA")]
    assert [d.name for d in reference.derivations(depth, "laplacian", {}, types)] == ["LA2"]
    nan = dict.fromkeys(names, np.full(3, np.nan))  # mne's "no position"
    with pytest.raises(DataError, match="ECoG contacts"):
        reference.derivations(names, "laplacian", nan, types)
    # the schemes that need no neighbours take any contact
    assert len(reference.derivations(names, "car", {}, types)) == len(names)
