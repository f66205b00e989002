"""Names that do not exist: a path no CPU test reaches (the Triton first-call compile needs a GPU)
once referred to a variable of another function, and only a GPU run would have shown it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("pyflakes")


def test_no_undefined_names_in_the_package():
    folders = [str(REPO / name) for name in ("server", "tools", "wiki_index", "resources", "bench")]
    out = subprocess.run([sys.executable, "-m", "pyflakes", *folders], capture_output=True, text=True, timeout=120)
    undefined = [line for line in (out.stdout + out.stderr).splitlines() if "undefined name" in line]
    assert not undefined, "\n".join(undefined)
