"""The authors' released BaRISTA encoders: download, verify, convert to :class:`BaristaEncoder`.

The release (github.com/ShanechiLab/BaRISTA at commit 83b2737, ``pretrained_models/``) holds three
encoders, one per encoding scale, each pretrained with channel-scale masking: ``chans_chans``,
``parcels_chans`` and ``lobes_chans``. Each file is a plain ``state_dict`` (``tokenizer.*`` and
``backbone.*``) of the architecture the ``paper`` preset implements. The checkpoints carry the
University of Southern California's licence (research and non-profit use, ``LICENSE-checkpoints.md``
in the release); this project never ships them, :func:`download_release` fetches them.

The released model expects 2048 Hz signals cut into 3 s windows of 12 patches of 512 samples
(its ``Linear(512 -> 64)`` fixes the patch length). Spatial ids follow the release's tables:

- ``parcel``: the release's Destrieux index (``resources/release_destrieux_index.tsv``, 121 rows;
  labels upper-case with ``-`` -> ``_``, e.g. ``ctx_lh_G_temp_sup-G_T_transv`` ->
  ``CTX_LH_G_TEMP_SUP_G_T_TRANSV``);
- ``lobe``: the release's **Desikan-Killiany** label -> lobe index
  (``resources/release_lobe_index.tsv``, 21 ids; several labels share one);
- ``channel``: integer L, I, P rows (0..199 per axis) of Brain Treebank's localization table,
  ``batch["grid_ids"]``; data with MNI positions only get ``round(mm) + 100`` rows
  (:func:`barista.models.spatial.mni_grid_ids`), which are not the places the released tables
  were trained on.

Labels outside a table get id 0, the release's untrained UNKNOWN row.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import numpy as np

from .download import (
    _HEADERS,
    _TRANSIENT,
    _backoff,
    _content_length,
    _describe_exception,
    _IncompleteTransfer,
    _is_transient_status,
    _resumes_at,
    _size_of,
)
from .errors import BaristaError, DataError, DownloadError

if TYPE_CHECKING:  # torch and the models load only with a checkpoint (the CLI imports this)
    import torch

    from .models import BaristaEncoder

log = logging.getLogger(__name__)

#: Where a released checkpoint is fetched from (``name`` is a key of :data:`RELEASES`).
RELEASE_URL = ("https://github.com/ShanechiLab/BaRISTA/raw/"
               "83b27375eba60e9eba9da4e7dd8fb283baace376/pretrained_models/{name}.ckpt")
#: name -> (sha256 of the file, encoding scale); every one was pretrained with channel masking.
RELEASES: dict[str, tuple[str, str]] = {
    "chans_chans": ("400eeacc0697004cb81c9ecf754859da184ffeea40afc8ee7b5930c3b997e1d0",
                    "channel"),
    "parcels_chans": ("6c234517d286a8e710b09716dc88c713618670df523cfffb89e4c9073f2657c1",
                      "parcel"),
    "lobes_chans": ("d810338a4929df0fb2421f342b3ee859f9fef269e35fb4f2fd9c55347a63324a", "lobe"),
}
#: Signal geometry the released encoders were trained on.
RELEASE_GEOMETRY = {"sfreq": 2048.0, "window_s": 3.0, "n_patches": 12, "patch_samples": 512}
#: Default download folder (ignored by git: the checkpoints are never committed).
DEFAULT_DEST = Path("resources/release")
LICENCE_NOTE = ("the released checkpoints carry the University of Southern California's licence "
                "(research and non-profit use; LICENSE-checkpoints.md in the release)")

_CHUNK = 1 << 16
_TOKENIZER = "tokenizer.temporal_encoder.feature_extractor.net"
_SPATIAL = "tokenizer.spatial_encoder.subcomponent_embeddings"
_VOCAB_FILES = {"parcel": "release_destrieux_index.tsv", "lobe": "release_lobe_index.tsv"}


# ----------------------------------------------------------------------------- download


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> tuple[str, str]:
    if name not in RELEASES:
        raise BaristaError(f"unknown released checkpoint {name!r}; one of {sorted(RELEASES)}")
    return RELEASES[name]


def download_release(name: str, dest_dir: Path, url: str | None = None, *,
                     timeout: float = 60.0, retries: int = 5) -> Path:
    """Fetch ``dest_dir/<name>.ckpt`` from the release and verify its sha256.

    Nothing is fetched when the file is already there with the right hash. Transfers resume
    from ``<name>.ckpt.part`` with an HTTP ``Range`` request, also across calls; see
    :func:`fetch_verified` for the failures.
    """
    sha256, _ = _check_name(name)
    url = url or RELEASE_URL.format(name=name)
    target = Path(dest_dir) / f"{name}.ckpt"
    path = fetch_verified(url, target, sha256, timeout=timeout, retries=retries)
    log.info("%s: %s", path, LICENCE_NOTE)
    return path


def fetch_verified(url: str, target: Path, sha256: str, *, timeout: float = 60.0,
                   retries: int = 5) -> Path:
    """Download ``url`` to ``target`` unless it is already there with hash ``sha256``.

    Bytes arrive in ``target.part``; a dropped connection is resumed (``Range``) within the
    call, up to ``retries`` attempts, and the ``.part`` left by a failed call is resumed by the
    next one. Only a file with the right hash gets the final name.

    Raises
    ------
    DownloadError
        An HTTP error other than a transient one (5xx, 408, 429), a transfer still incomplete
        after ``retries`` attempts (the ``.part`` is kept for the next call), or a complete
        file with another sha256 (moved aside to ``target.rejected``, not deleted, so it can be
        inspected).
    """
    target = Path(target)
    if retries < 1:
        raise DownloadError(f"retries must be at least 1, got {retries}")
    if target.is_file():
        if sha256_of(target) == sha256:
            log.info("%s is already there with the right sha256", target)
            return target
        log.warning("%s exists with another sha256: downloading it again", target)
    part = target.with_name(target.name + ".part")
    rejected = target.with_name(target.name + ".rejected")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {target.parent}: {exc}") from None
    reason = ""
    restarted = False
    for attempt in range(1, retries + 1):
        resumed = _size_of(part) > 0
        try:
            digest = _transfer(url, part, timeout)
        except HTTPError as exc:
            exc.close()
            if exc.code == 416:  # asked past the end: the part is complete, or not this file
                digest = sha256_of(part)
            elif not _is_transient_status(exc.code):
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            else:
                reason = f"HTTP {exc.code} {exc.reason}"
                _backoff(attempt, retries)
                continue
        except _TRANSIENT as exc:
            reason = _describe_exception(exc)
            _backoff(attempt, retries)
            continue
        except OSError as exc:  # the local disk: retrying will not help
            raise DownloadError(f"cannot write {part}: {exc}") from None
        if digest == sha256:
            os.replace(part, target)
            return target
        if resumed and not restarted:
            # the old part may have been a prefix of another file: fetch it whole once
            log.warning("%s: sha256 %s after resuming %s; fetching the whole file again",
                        url, digest, part)
            part.unlink(missing_ok=True)
            restarted = True
            continue
        size = _size_of(part)
        os.replace(part, rejected)
        raise DownloadError(
            f"{url}: sha256 mismatch: expected {sha256}, got {digest} ({size} bytes); the file "
            f"was moved aside to {rejected} (not loaded); check the URL")
    raise DownloadError(
        f"{url}: incomplete after {retries} attempt(s): {reason}; the {_size_of(part)} bytes "
        f"received are kept in {part} and the next download resumes from there")


def _transfer(url: str, part: Path, timeout: float) -> str:
    """Append the rest of ``url`` to ``part``; the sha256 of the whole part."""
    offset = _size_of(part)
    digest = hashlib.sha256()
    if offset:
        with open(part, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    headers = dict(_HEADERS)
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urlopen(Request(url, headers=headers), timeout=timeout) as response:
        if offset and not _resumes_at(response, offset):
            offset, digest = 0, hashlib.sha256()  # the server sends the whole file
        expected = _content_length(response)
        received = 0
        with open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    if expected is not None and received < expected:
        raise _IncompleteTransfer(f"connection closed after {offset + received} of "
                                  f"{offset + expected} bytes")
    return digest.hexdigest()


# ------------------------------------------------------------------------------ loading


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint; fetch one with `barista release download "
                        f"NAME` ({', '.join(RELEASES)})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip or pickle errors: the file is not a whole checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{path}: cannot be read as a torch checkpoint ({type(exc).__name__}: "
                        f"{first}); the file is truncated or corrupt: download it again "
                        f"(barista release download NAME)") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(f"{path}: not a state_dict (a mapping of names to tensors), got "
                        f"{type(state).__name__}")
    return dict(state)


def _scale_of(state: dict, name: str | None, path: Path) -> str:
    if name is not None:
        return _check_name(name)[1]
    if f"{_SPATIAL}.1.weight" in state:
        return "channel"
    table = state.get(f"{_SPATIAL}.0.weight")
    if table is None:
        return "parcel"  # no spatial table at all: the key check below says what is missing
    sizes = {scale: max(release_vocabulary(scale).values()) + 1 for scale in _VOCAB_FILES}
    for scale, rows in sizes.items():
        if table.shape[0] == rows:
            return scale
    raise DataError(f"{path}: spatial table of {table.shape[0]} rows matches neither the parcel "
                    f"({sizes['parcel']}) nor the lobe ({sizes['lobe']}) vocabulary; pass the "
                    f"checkpoint's name ({', '.join(RELEASES)})")


def _mapping(encoder: BaristaEncoder) -> list[tuple[str, str, str]]:
    """``(release key, our key, how)`` for every tensor of a release checkpoint.

    ``how``: ``copy``; ``conv`` (a (out, in, 1, k) 2-D kernel to Conv1d's (out, in, k));
    ``gate`` / ``up`` (the first / second half of the rows of our fused GeGLU input layer);
    ``check`` (the rotary frequencies: compared with ours, not loaded).
    """
    rows: list[tuple[str, str, str]] = []
    for i, block in enumerate(encoder.tokenizer.cnn):
        for conv in ("conv1", "conv2"):
            rows += [(f"{_TOKENIZER}.{i}.{conv}.conv.weight", f"tokenizer.cnn.{i}.{conv}.weight",
                      "conv"),
                     (f"{_TOKENIZER}.{i}.{conv}.conv.bias", f"tokenizer.cnn.{i}.{conv}.bias",
                      "copy")]
        if block.projector is not None:
            rows += [(f"{_TOKENIZER}.{i}.projector.weight", f"tokenizer.cnn.{i}.projector.weight",
                      "conv"),
                     (f"{_TOKENIZER}.{i}.projector.bias", f"tokenizer.cnn.{i}.projector.bias",
                      "copy")]
    rows.append(("tokenizer.temporal_pooler.final_layer.weight", "tokenizer.project.weight",
                 "copy"))
    if encoder.config.encode_scale == "channel":
        rows += [(f"{_SPATIAL}.{a}.weight", f"spatial.axes.{a}.weight", "copy") for a in range(3)]
    else:
        rows.append((f"{_SPATIAL}.0.weight", "spatial.table.weight", "copy"))
    for layer in range(encoder.config.n_layers):
        src, dst = f"backbone.layers.{layer}", f"transformer.blocks.{layer}"
        for part in ("weight", "bias"):
            rows += [(f"{src}.attention.qkv_proj.{part}", f"{dst}.attn.qkv.{part}", "copy"),
                     (f"{src}.attention.o_proj.{part}", f"{dst}.attn.out.{part}", "copy"),
                     (f"{src}.mlp.gate_proj.{part}", f"{dst}.ffn.gate_value.{part}", "gate"),
                     (f"{src}.mlp.up_proj.{part}", f"{dst}.ffn.gate_value.{part}", "up"),
                     (f"{src}.mlp.down_proj.{part}", f"{dst}.ffn.out.{part}", "copy")]
        rows += [(f"{src}.attention.rotary_emb.inv_freq", "rotary.inv_freq", "check"),
                 (f"{src}.norm1.weight", f"{dst}.norm1.weight", "copy"),
                 (f"{src}.norm2.weight", f"{dst}.norm2.weight", "copy")]
    rows.append(("backbone.norm.weight", "transformer.norm.weight", "copy"))
    return rows


def _release_shape(ours: torch.Tensor, how: str) -> tuple[int, ...]:
    if how == "conv":
        out_ch, in_ch, k = ours.shape
        return (out_ch, in_ch, 1, k)
    if how in ("gate", "up"):
        return (ours.shape[0] // 2, *ours.shape[1:])
    return tuple(ours.shape)


def _listing(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_release(path: Path, *, name: str | None = None, patch_samples: int = 512,
                 n_patches: int = 12, dropout: float = 0.1, log_mapping: bool = True
                 ) -> tuple[BaristaEncoder, list[tuple[str, str]]]:
    """Our encoder (``paper`` preset) holding a released checkpoint, and the key mapping used.

    Parameters
    ----------
    path : Path
        A released ``.ckpt`` (a ``state_dict``).
    name : str, optional
        Its name in :data:`RELEASES`; by default the file's stem when it is one, else the scale
        is read from the spatial tables (three -> channel; 121 rows -> parcel; 21 -> lobe).
    patch_samples, n_patches : int
        Geometry of the data to encode; the release's ``Linear(512 -> 64)`` needs 512-sample
        patches (2048 Hz, 3 s windows of 12 patches).
    dropout : float
        Dropout of the backbone when finetuned (the release's: 0.1).
    log_mapping : bool
        Log the key mapping (INFO); off where the caller prints it itself.

    Returns
    -------
    encoder : BaristaEncoder
        In training mode, as built; ``mask_token`` (pretraining only) is not in the release and
        keeps its start.
    mapping : list of (release key, our key)
        Every tensor of the checkpoint and where it went; GeGLU's ``gate_proj`` / ``up_proj``
        go to the first / second half (``[:h]`` / ``[h:]``) of ``ffn.gate_value``; the rotary
        ``inv_freq`` is checked against ours, not loaded.
    """
    import torch

    from .models import BaristaEncoder, preset

    path = Path(path)
    if patch_samples != RELEASE_GEOMETRY["patch_samples"]:
        raise DataError(
            f"{path}: the released encoders take patches of 512 samples (their tokenizer ends in "
            f"Linear(512 -> 64)), got {patch_samples}; the data must be 2048 Hz in 3 s windows "
            f"of 12 patches of 512 samples")
    state = _read_state(path)
    if name is None and path.stem in RELEASES:
        name = path.stem
    if name is not None:
        sha256, _ = _check_name(name)
        if sha256_of(path) != sha256:
            log.warning("%s: sha256 differs from the released %s.ckpt; loading it anyway "
                        "(its keys and shapes are checked)", path, name)
    scale = _scale_of(state, name, path)
    table = state.get(f"{_SPATIAL}.0.weight")
    vocab = int(table.shape[0]) if scale != "channel" and table is not None else 1
    config = preset("paper", patch_samples=patch_samples, n_patches=n_patches,
                    encode_scale=scale, vocab_size=vocab, dropout=dropout,
                    spatial_init="release", channel_coordinates="lip")
    encoder = BaristaEncoder(config)
    ours = encoder.state_dict()
    ours["rotary.inv_freq"] = encoder.rotary.inv_freq
    rows = _mapping(encoder)

    expected = {src: _release_shape(ours[dst], how) for src, dst, how in rows}
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
             for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} keys missing: {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        if wrong:
            problems.append(f"{len(wrong)} of another shape: {'; '.join(wrong[:6])}")
        raise DataError(f"{path}: not a released BaRISTA encoder of the paper's architecture "
                        f"({scale} scale): " + "; ".join(problems))

    new = {k: v.clone() for k, v in encoder.state_dict().items()}
    mapping = []
    for src, dst, how in rows:
        value = state[src].to(torch.float32)
        if how == "check":
            if not torch.allclose(value, encoder.rotary.inv_freq, rtol=1e-6, atol=0):
                raise DataError(f"{path}: {src} holds other rotary frequencies than ours (base "
                                f"{config.rope_base})")
            mapping.append((src, f"{dst} (checked, not loaded)"))
            continue
        if how == "conv":
            value = value.squeeze(2)
        if how in ("gate", "up"):
            h = value.shape[0]
            rows_ = slice(0, h) if how == "gate" else slice(h, 2 * h)
            new[dst][rows_] = value
            mapping.append((src, f"{dst}[{rows_.start}:{rows_.stop}]"))
            continue
        new[dst] = value
        mapping.append((src, dst))
    encoder.load_state_dict(new)
    log.info("loaded %s (%s scale, vocabulary %d) into BaristaEncoder%s", path, scale, vocab,
             "; key mapping:\n" + format_mapping(mapping) if log_mapping else "")
    return encoder, mapping


def format_mapping(mapping: list[tuple[str, str]]) -> str:
    """The mapping as aligned ``release key -> our key`` lines."""
    width = max((len(src) for src, _ in mapping), default=0)
    return "\n".join(f"{src:<{width}} -> {dst}" for src, dst in mapping)


# ------------------------------------------------------------------------- vocabularies


@cache
def release_vocabulary(scale: str) -> dict[str, int]:
    """The release's label -> id table of a scale: ``parcel`` (Destrieux, 121 ids) or ``lobe``
    (Desikan-Killiany labels -> 21 lobe ids; several labels share one). Id 0 is UNKNOWN."""
    if scale not in _VOCAB_FILES:
        raise BaristaError(f"the release has label tables for {sorted(_VOCAB_FILES)}, not "
                           f"{scale!r} (channel ids are integer L, I, P grid rows)")
    path = resources.files("barista") / "resources" / _VOCAB_FILES[scale]
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)  # header
        return {label.strip(): int(index) for label, index in reader}


def release_label(label: str) -> str:
    """A FreeSurfer label as the release spells it: upper case, ``-`` -> ``_``
    (``ctx-lh-superiortemporal`` -> ``CTX_LH_SUPERIORTEMPORAL``)."""
    return label.strip().upper().replace("-", "_")


def release_spatial_ids(labels: Iterable[str | None], scale: str
                        ) -> tuple[np.ndarray, list[str]]:
    """Release ids of atlas labels, and the distinct labels that matched nothing.

    ``parcel``: Destrieux labels as localization stores them (``ctx_lh_G_temp_sup-G_T_transv``,
    ``Left-Hippocampus``); ``lobe``: **Desikan-Killiany** labels (``ctx-lh-superiortemporal``,
    ``Left-Hippocampus``). A label outside the table (white matter, structures or cortex the
    release never saw) gets 0, the UNKNOWN row; those labels are returned, sorted, so callers
    can log them (empty / ``unknown`` labels are expected to be 0 and are not listed).
    """
    vocab = release_vocabulary(scale)
    ids, unmatched = [], set()
    for label in labels:
        key = release_label(label) if isinstance(label, str) else ""
        index = vocab.get(key, 0)
        if index == 0 and key not in ("", "UNKNOWN"):
            unmatched.add(label)
        ids.append(index)
    return np.asarray(ids, dtype=np.int64), sorted(unmatched)
