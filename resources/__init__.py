"""Data shipped with kda-mcp: the embedded sample dataset and the phase prompts."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def sample_dataset_path() -> Path:
    """The embedded FlashInfer-Trace sample dataset (used when no dataset is configured)."""
    return _HERE / "dataset"


def prompts_path() -> Path:
    """Folder of the phase prompt templates (phase1.md, phase2.md, ...)."""
    return _HERE / "prompts"
