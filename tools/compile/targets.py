"""Compute targets: parse what the agent names, or pick one from the GPU."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kda_mcp.tools.errors import InvalidArgumentError

# Arch-specific ('a') targets unlock wgmma/setmaxnreg (sm_90a) and tcgen05/TMEM (sm_100a); a plain
# sm_90 build silently loses them, so GPUs that have such a target default to it.
_ARCH_SPECIFIC = {(9, 0), (10, 0), (10, 3), (12, 0)}
KNOWN = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100a", "sm_103a", "sm_120a")
_DOTTED = re.compile(r"^(\d{1,2})\.(\d)([af]?)$")
_NAMED = re.compile(r"^(?:sm_?|compute_?)(\d{1,2})(\d)([af]?)$")


@dataclass(frozen=True)
class Target:
    major: int
    minor: int
    suffix: str = ""

    @property
    def name(self) -> str:
        return f"sm_{self.major}{self.minor}{self.suffix}"

    @property
    def compute(self) -> str:
        return f"compute_{self.major}{self.minor}{self.suffix}"

    @property
    def gencode(self) -> str:
        return f"-gencode=arch={self.compute},code={self.name}"

    @property
    def dotted(self) -> str:
        """The 'X.Ya' spelling TORCH_CUDA_ARCH_LIST and TVM_FFI_CUDA_ARCH_LIST take."""
        return f"{self.major}.{self.minor}{self.suffix}"


def parse_target(text: str) -> Target:
    """'sm_90a', 'sm90a', 'compute_90a', '9.0a', 'sm_100a', '10.0a' -> Target."""
    cleaned = text.strip().lower()
    match = _DOTTED.match(cleaned) or _NAMED.match(cleaned)
    if not match:
        raise InvalidArgumentError(f"Unknown arch {text!r}; name one like {', '.join(KNOWN)}.")
    major, minor, suffix = match.groups()
    if int(major) < 7:
        raise InvalidArgumentError(f"Arch {text!r} is older than anything nvcc 12+ builds for; use sm_80 or newer.")
    return Target(int(major), int(minor), suffix)


def default_target(compute_capability: str | None) -> Target:
    """The GPU's own arch-specific target, or sm_90a (Hopper) when there is no GPU to ask."""
    if not compute_capability:
        return Target(9, 0, "a")
    major, _, minor = compute_capability.partition(".")
    key = (int(major), int(minor or 0))
    return Target(*key, "a" if key in _ARCH_SPECIFIC else "")
