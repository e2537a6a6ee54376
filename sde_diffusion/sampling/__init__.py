"""Sampling: the entry point :func:`sample` (prior draw, reverse-time integration, optional
denoising) and :func:`sample_chunked` (many samples, a batch at a time, per-sample seeds)."""

from .chunked import sample_chunked
from .driver import SampleResult, sample

__all__ = ["SampleResult", "sample", "sample_chunked"]
