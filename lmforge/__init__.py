"""lmforge: build and align a language model end to end, stage by stage."""

__version__ = "0.1.0"
