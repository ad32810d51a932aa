"""Re-referencing schemes for depth (sEEG) and grid (ECoG) contacts.

Contacts are grouped into shafts by name: ``LA1, LA2, ...`` is shaft ``LA`` with contacts 1, 2, ...
Neighbour candidates are the contacts whose numbers differ by one on the same shaft; where the
contacts' positions are known, a candidate is a neighbour only if it is near (within
:data:`NEIGHBOUR_TOLERANCE` times the shaft's median contact spacing) and, for the Laplacian,
the two neighbours lie on opposite sides. Numbering alone says nothing about an ECoG grid's
rows: G4 and G5 of a 4-column grid are on different rows, 32 mm apart. So ECoG contacts without
positions are refused by the shaft schemes (the depth contacts of a shaft lie on a line, so their
names suffice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import DataError

#: a neighbour lies within this many times the shaft's median contact spacing: above the jitter
#: of localized depth contacts (~20%), below the 1.41 of the diagonal step at a 2-column grid's
#: row end (wider grids' row ends are further)
NEIGHBOUR_TOLERANCE = 1.35
#: the Laplacian's two neighbours must lie on opposite sides: an angle of at least 120 degrees
_OPPOSITE_COS = -0.5

_CONTACT = re.compile(r"^(?P<shaft>.*?)(?P<index>\d+)$")


def parse_contact(name: str) -> tuple[str, int] | None:
    """Split ``'LA12'`` into ``('LA', 12)``; ``None`` when the name has no trailing number."""
    m = _CONTACT.match(name.strip())
    if m is None or not m.group("shaft"):
        return None
    return m.group("shaft"), int(m.group("index"))


@dataclass(frozen=True)
class Derivation:
    """One output channel as a weighted sum of input channels."""

    name: str
    anchor: str  # contact whose location the output channel takes
    weights: dict[str, float]


class Geometry:
    """Which name-adjacent contacts are really neighbours, from positions where known.

    ``positions`` maps names to xyz in any unit (NaN or all-zero: unknown), ``types`` names to
    ``seeg``/``ecog``; a contact of unknown type counts as a depth contact.
    """

    def __init__(self, ch_names: list[str], positions: dict | None = None,
                 types: dict | None = None):
        self.pos = {n: np.asarray(p, float) for n, p in (positions or {}).items()
                    if p is not None and np.all(np.isfinite(p)) and np.any(np.asarray(p) != 0)}
        self.types = types or {}
        self.present = set(ch_names)
        steps: dict[str, list[float]] = {}
        for name in ch_names:
            parsed = parse_contact(name)
            nxt = parsed and _find(self.present, parsed[0], parsed[1] + 1, name)
            if nxt and name in self.pos and nxt in self.pos:
                steps.setdefault(parsed[0], []).append(self.distance(name, nxt))
        self.spacing = {shaft: float(np.median(d)) for shaft, d in steps.items()}
        self.unplaced_ecog: list[str] = []  # ECoG contacts the schemes could not place

    def distance(self, a: str, b: str) -> float:
        return float(np.linalg.norm(self.pos[a] - self.pos[b]))

    def near(self, shaft: str, a: str, b: str) -> bool | None:
        """Is ``b`` a real neighbour of ``a``; ``None``: unknown (an ECoG contact unplaced)."""
        if a in self.pos and b in self.pos:
            return self.distance(a, b) <= NEIGHBOUR_TOLERANCE * self.spacing[shaft]
        if "ecog" in (self.types.get(a), self.types.get(b)):
            self.unplaced_ecog += [c for c in (a, b) if c not in self.unplaced_ecog]
            return None
        return True  # depth contacts: consecutive numbers on a shaft are neighbours

    def opposite(self, centre: str, a: str, b: str) -> bool:
        """Do ``a`` and ``b`` lie on opposite sides of ``centre`` (true when unknown)?"""
        if not all(c in self.pos for c in (centre, a, b)):
            return True
        u, v = self.pos[a] - self.pos[centre], self.pos[b] - self.pos[centre]
        return float(u @ v) <= _OPPOSITE_COS * float(np.linalg.norm(u) * np.linalg.norm(v))

    def check(self, scheme: str) -> None:
        if self.unplaced_ecog:
            names = sorted(self.unplaced_ecog, key=lambda n: parse_contact(n) or (n, 0))
            raise DataError(
                f"re-reference '{scheme}': ECoG contacts {names[:10]} have no "
                "position (electrodes.tsv), and their numbering alone does not say which "
                "contacts of a grid are neighbours (G4 and G5 may lie on different rows); "
                "add their positions, or set config key 'preprocess.reference' to 'car' or "
                "'none'")


def laplacian(ch_names: list[str], positions: dict | None = None,
              types: dict | None = None) -> list[Derivation]:
    """Contact minus the mean of its two shaft neighbours; contacts lacking either are dropped.

    With ``positions`` (name -> xyz) a neighbour must be near and the two on opposite sides
    (see :class:`Geometry`); ECoG contacts (``types``) without positions are an error.
    """
    geo = Geometry(ch_names, positions, types)
    out = []
    for name in ch_names:
        parsed = parse_contact(name)
        if parsed is None:
            continue
        shaft, idx = parsed
        before = _find(geo.present, shaft, idx - 1, name)
        after = _find(geo.present, shaft, idx + 1, name)
        if not (before and after):
            continue
        near = [geo.near(shaft, name, before), geo.near(shaft, name, after)]
        if all(near) and geo.opposite(name, before, after):
            out.append(Derivation(name, name, {name: 1.0, before: -0.5, after: -0.5}))
    geo.check("laplacian")
    return out


def bipolar(ch_names: list[str], positions: dict | None = None,
            types: dict | None = None) -> list[Derivation]:
    """Adjacent pairs on a shaft, ``LA1-LA2`` = LA1 minus LA2, located at the anode (LA1);
    with ``positions``, only pairs that are near (see :class:`Geometry`)."""
    geo = Geometry(ch_names, positions, types)
    out = []
    for name in ch_names:
        parsed = parse_contact(name)
        if parsed is None:
            continue
        nxt = _find(geo.present, parsed[0], parsed[1] + 1, name)
        if nxt and geo.near(parsed[0], name, nxt):
            out.append(Derivation(f"{name}-{nxt}", name, {name: 1.0, nxt: -1.0}))
    geo.check("bipolar")
    return out


def _find(present: set[str], shaft: str, index: int, like: str) -> str | None:
    """Neighbour name, tolerating zero padding (``LA01`` next to ``LA02``)."""
    if index < 0:
        return None
    digits = len(like) - len(shaft)
    for candidate in (f"{shaft}{index}", f"{shaft}{index:0{digits}d}"):
        if candidate in present:
            return candidate
    return None


def derivations(ch_names: list[str], scheme: str, positions: dict | None = None,
                types: dict | None = None) -> list[Derivation]:
    """Output channels for a re-referencing ``scheme``: laplacian, bipolar, car or none
    (``positions`` and ``types`` as for :func:`laplacian`)."""
    if scheme == "laplacian":
        return laplacian(ch_names, positions, types)
    if scheme == "bipolar":
        return bipolar(ch_names, positions, types)
    if scheme == "car":
        n = len(ch_names)
        return [Derivation(c, c, {o: (1.0 if o == c else 0.0) - 1.0 / n for o in ch_names})
                for c in ch_names]
    if scheme == "none":
        return [Derivation(c, c, {c: 1.0}) for c in ch_names]
    raise ValueError(f"unknown re-reference scheme {scheme!r}")


def apply(data: np.ndarray, ch_names: list[str], derivs: list[Derivation]) -> np.ndarray:
    """Apply derivations to ``data`` (channels x time); a sparse weight matrix product."""
    index = {c: i for i, c in enumerate(ch_names)}
    weights = np.zeros((len(derivs), len(ch_names)), dtype=data.dtype)
    for row, d in enumerate(derivs):
        for ch, w in d.weights.items():
            weights[row, index[ch]] = w
    return weights @ data
