"""Model components (tokenizer, spatial encoders, rotary embeddings, packed attention, MRoPE,
context attention) and the BaRISTA and RPNT encoders built from them."""

from .barista import BaristaConfig, BaristaEncoder, preset
from .rpnt import (
    RPNT_PRESETS,
    RpntConfig,
    RpntEncoder,
    batch_coordinates,
    recording_ids,
    rpnt_preset,
)

__all__ = ["RPNT_PRESETS", "BaristaConfig", "BaristaEncoder", "RpntConfig", "RpntEncoder",
           "batch_coordinates", "preset", "recording_ids", "rpnt_preset"]
