import numpy as np
import pytest

from barista import reference


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
