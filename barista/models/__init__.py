"""Model components (tokenizer, spatial encoders, rotary embeddings, packed attention) and the
BaRISTA encoder built from them."""

from .barista import BaristaConfig, BaristaEncoder, preset

__all__ = ["BaristaConfig", "BaristaEncoder", "preset"]
