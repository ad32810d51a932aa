"""Re-referencing schemes for depth (sEEG) and grid (ECoG) contacts.

Contacts are grouped into shafts by name: ``LA1, LA2, ...`` is shaft ``LA`` with contacts 1, 2, ...
Neighbours are the contacts whose numbers differ by one on the same shaft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

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


def laplacian(ch_names: list[str]) -> list[Derivation]:
    """Contact minus the mean of its two shaft neighbours; contacts lacking either are dropped."""
    present = set(ch_names)
    out = []
    for name in ch_names:
        parsed = parse_contact(name)
        if parsed is None:
            continue
        shaft, idx = parsed
        before, after = _find(present, shaft, idx - 1, name), _find(present, shaft, idx + 1, name)
        if before and after:
            out.append(Derivation(name, name, {name: 1.0, before: -0.5, after: -0.5}))
    return out


def bipolar(ch_names: list[str]) -> list[Derivation]:
    """Adjacent pairs on a shaft, ``LA1-LA2`` = LA1 minus LA2, located at the anode (LA1)."""
    present = set(ch_names)
    out = []
    for name in ch_names:
        parsed = parse_contact(name)
        if parsed is None:
            continue
        nxt = _find(present, parsed[0], parsed[1] + 1, name)
        if nxt:
            out.append(Derivation(f"{name}-{nxt}", name, {name: 1.0, nxt: -1.0}))
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


def derivations(ch_names: list[str], scheme: str) -> list[Derivation]:
    """Output channels for a re-referencing ``scheme``: laplacian, bipolar, car or none."""
    if scheme == "laplacian":
        return laplacian(ch_names)
    if scheme == "bipolar":
        return bipolar(ch_names)
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
