"""What a definition forbids a solution to use, and the static half of enforcing it.

A definition may carry a `policy` object (flashinfer-bench ignores it):
    {"forbidden_calls": ["torch.matmul", "torch.nn.functional.linear", ...],
     "forbidden_kernels": ["^nvjet", "xmma_gemm"],      # regexes on launched kernel names
     "forbidden_libraries": ["cublas"],                  # names searched for in C++/CUDA sources
     "speedup_ceiling": 50}
The runtime half lives in the solution child (calls recorded) and the orchestrator (kernel names).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from flashinfer_bench.data import Solution
from pydantic import BaseModel, Field

from kda_mcp.tools.evaluation.models import Finding


class Policy(BaseModel):
    forbidden_calls: list[str] = Field(default_factory=list)
    forbidden_kernels: list[str] = Field(default_factory=list)
    forbidden_libraries: list[str] = Field(default_factory=list)
    speedup_ceiling: float | None = None


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _python_findings(path: str, source: str, forbidden: set[str]) -> list[Finding]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[(alias.asname or alias.name).split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    tensor_methods = {n.rsplit(".", 1)[-1] for n in forbidden if n.startswith("torch.Tensor.")}
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = _dotted(node, aliases)
        elif isinstance(node, ast.Name) and node.id in aliases and "." in aliases[node.id]:
            name = aliases[node.id]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and "torch.Tensor.__matmul__" in forbidden:
            name = "torch.Tensor.__matmul__"
        if name and name in forbidden:
            found.append(Finding(check="forbidden_call", detail=f"{path}:{node.lineno} uses {name}, which this definition forbids"))
        elif name and not name.startswith("torch.") and name.rsplit(".", 1)[-1] in tensor_methods:
            method = name.rsplit(".", 1)[-1]
            found.append(Finding(check="forbidden_call", detail=f"{path}:{node.lineno} calls .{method}(), which this definition forbids"))
    return found


def static_findings(solution: Solution, policy: Policy) -> list[Finding]:
    """Forbidden calls named in Python sources, forbidden libraries named in C++/CUDA sources."""
    forbidden = set(policy.forbidden_calls)
    findings: list[Finding] = []
    for source in solution.sources:
        if source.path.endswith(".py") and forbidden:
            findings += _python_findings(source.path, source.content, forbidden)
        elif source.path.endswith((".cu", ".cuh", ".cpp", ".cc", ".h", ".hpp")):
            for library in policy.forbidden_libraries:
                for number, line in enumerate(source.content.splitlines(), start=1):
                    if re.search(rf"\b{re.escape(library)}\w*\s*\(|#include\s*[<\"]{re.escape(library)}", line, re.IGNORECASE):
                        findings.append(Finding(check="forbidden_library", detail=f"{source.path}:{number} uses {library}, which this definition forbids"))
                        break
    return findings[:20]


def kernel_findings(names: list[str], policy: Policy) -> list[Finding]:
    hits = sorted({n for n in names for pattern in policy.forbidden_kernels if re.search(pattern, n)})
    if not hits:
        return []
    return [Finding(check="forbidden_kernel", detail=f"launched {hits[:3]}, which match kernels this definition forbids ({policy.forbidden_kernels})")]


def runtime_findings(calls: dict[str, Any] | None) -> list[Finding]:
    if not calls:
        return []
    return [Finding(check="forbidden_call", detail=f"called {', '.join(f'{k} ({v}x)' for k, v in sorted(calls.items()))} at run time, which this definition forbids")]
