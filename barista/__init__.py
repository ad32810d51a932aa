"""barista: intracranial recordings to pretrained spatiotemporal foundation models."""

__version__ = "0.1.0"
