"""Turn a built solution into a callable, inside the child process that will run it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flashinfer_bench.data import Solution


def write_sources(solution: Solution, folder: Path) -> None:
    for source in solution.sources:
        target = folder / source.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.content, encoding="utf-8")


def _import_file(path: Path, module_name: str) -> Any:
    # Sibling imports inside the solution ("from helpers import x") resolve from its folder.
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_entry(solution: Solution, source_dir: Path, library: str | None = None) -> Callable[..., Any]:
    """The solution's entry function: imported Python, or a symbol of the built library."""
    symbol = solution.get_entry_symbol()
    language = solution.spec.language.value
    if language in ("python", "triton", "tilelang"):
        entry_file = source_dir / solution.get_entry_path()
        module = _import_file(entry_file, f"kda_solution_{entry_file.stem}")
    elif solution.spec.binding is not None and solution.spec.binding.value == "torch":
        if not library:
            raise ImportError("the torch extension was not built")
        name = Path(library).name.split(".")[0]
        loader = importlib.machinery.ExtensionFileLoader(name, library)
        spec = importlib.util.spec_from_file_location(name, library, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    else:
        if not library:
            raise ImportError("the tvm-ffi library was not built")
        import tvm_ffi

        module = tvm_ffi.load_module(library)
    try:
        return getattr(module, symbol)
    except AttributeError as exc:
        raise ImportError(f"the solution defines no {symbol!r} (entry_point {solution.spec.entry_point})") from exc
