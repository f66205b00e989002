"""Valid values for inputs whose range a definition constrains.

flashinfer-bench draws every `random` input from one distribution per dtype: integers uniformly in
[-1024, 1024), floats standard normal. That is right for activations and weights and wrong for an
index, a length, a block table or cumulative sequence offsets: the reference then reads out of
range, divides the wrong sequences, or returns garbage, and a correct kernel cannot match it. A
definition says what its constrained inputs must look like in a key flashinfer-bench ignores,
next to `tolerance` and `policy`:

    "input_rules": {
      "sparse_indices": {"kind": "indices", "high": "num_pages * page_size", "valid_max": "min(topk, num_pages * page_size)",
                         "valid_min": 0, "full_fraction": 0.75, "pad": -1},
      "seq_lens":       {"kind": "int_range", "low": 1, "high": "max_num_pages * page_size", "per": "workload"},
      "block_table":    {"kind": "page_table", "pages": "num_pages"},
      "cu_seqlens":     {"kind": "offsets", "total": "total_seq_len", "min_length": 1, "per": "workload"},
      "local_expert_offset": {"kind": "choice", "values": [0, 32, 64]},
      "k":              {"kind": "l2_normalized"}
    }

Bounds are integers or expressions over the definition's axes (constants and the workload's
variables): + - * // %, min(), max(), parentheses. A rule applies only to an input the workload
leaves `random`; a `scalar` or `safetensors` input is the workload's own value and is never
replaced. `per` says how often a value is drawn: "call" (fresh with every call's seed, the default
for tensors) or "workload" (drawn once from the workload's uuid, the default for scalars), so a
per-workload value, such as a sequence layout that decides how much work a call is, is the same in
every call, every process and every run.

Kinds:

- `int_range` {low, high}: integers uniformly in [low, high] (both inclusive), tensor or scalar.
- `choice` {values}: each element (or the scalar) one of `values`.
- `indices` {high, valid_min, valid_max, full_fraction, pad, unique}: along the last axis, each row
  holds n valid entries first, then `pad` (-1); valid entries lie in [0, high), distinct within the
  row unless `unique` is false. n is `valid_max` with probability `full_fraction`, else uniform in
  [valid_min, valid_max] (clipped to the row length, and to `high` when unique).
- `page_table` {pages}: page ids in [0, pages), all distinct over the whole table when it fits,
  else distinct within each row (each row a random arrangement of distinct pages).
- `offsets` {total, min_length}: a 1-D tensor [S + 1] of cumulative lengths: 0 first, `total`
  last, every step at least `min_length` (a random composition of `total` into S sequences).
- `l2_normalized` {norm}: standard normal rows scaled to L2 norm `norm` (default 1) along the
  last axis, as the keys and queries of a delta-rule layer are.
- `uniform` {low, high}: floats uniformly in [low, high).
- `fp8_pages_with_scales` {head_dim, scale_low, scale_high}: a paged byte cache [P, ...] whose page
  holds page_size x head_dim float8_e4m3fn values (standard normal clamped to [-2, 2]) followed by
  page_size float32 scales in [scale_low, scale_high) (DeepGEMM's packed index-key layout).

Trusted code: the judge imports it; so do the processes that make one call's inputs (profile,
sanitizer, first-call build), which resolve the rules from the dataset themselves.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import math
import operator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kda_mcp.tools.errors import DatasetError

log = logging.getLogger(__name__)

RULE_KEY = "input_rules"

INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8"}
FLOAT_DTYPES = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}

# kind -> (allowed dtypes, required parameters, optional parameters)
KINDS: dict[str, tuple[set[str], set[str], set[str]]] = {
    "int_range": (INT_DTYPES, {"low", "high"}, set()),
    "choice": (INT_DTYPES | FLOAT_DTYPES | {"bool"}, {"values"}, set()),
    "indices": (INT_DTYPES - {"uint8"}, {"high"}, {"valid_min", "valid_max", "full_fraction", "pad", "unique"}),
    "page_table": (INT_DTYPES, {"pages"}, set()),
    "offsets": (INT_DTYPES, {"total"}, {"min_length"}),
    "l2_normalized": (FLOAT_DTYPES, set(), {"norm"}),
    "uniform": (FLOAT_DTYPES, {"low", "high"}, set()),
    "fp8_pages_with_scales": ({"int8", "uint8"}, {"head_dim"}, {"scale_low", "scale_high"}),
}
TENSOR_ONLY = {"indices", "page_table", "offsets", "l2_normalized", "fp8_pages_with_scales"}
EXPRESSION_PARAMS = {"low", "high", "pages", "total", "min_length", "valid_min", "valid_max", "head_dim"}
COMMON = {"kind", "per", "description"}
CHUNK_ELEMENTS = 1 << 24  # random keys drawn at once when sampling distinct values


class RuleError(DatasetError):
    """A rule that cannot be applied to its definition; the message names the input and why."""


# ---- expressions over axes

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CALLS = {"min": min, "max": max}


def expression_names(expr: Any) -> set[str]:
    """The axis names an expression uses (an int uses none)."""
    if isinstance(expr, bool) or not isinstance(expr, (int, float, str)):
        raise RuleError(f"bound {expr!r} is neither a number nor an expression")
    if not isinstance(expr, str):
        return set()
    tree = _parse(expr)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in _CALLS}


def _parse(expr: str) -> ast.AST:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"bound {expr!r} is not an expression: {exc.msg}") from exc
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Call, ast.UnaryOp, ast.USub, *_BINARY)
        if not isinstance(node, allowed):
            raise RuleError(f"bound {expr!r} uses {type(node).__name__}; only + - * // %, min(), max() over axes are allowed")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _CALLS and not node.keywords):
            raise RuleError(f"bound {expr!r} calls something other than min() or max()")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
            raise RuleError(f"bound {expr!r} holds the constant {node.value!r}")
    return tree


def evaluate(expr: Any, axes: Mapping[str, int]) -> int | float:
    """The value of a bound: an int as is, an expression over `axes`."""
    if isinstance(expr, bool):
        raise RuleError(f"bound {expr!r} is a boolean")
    if isinstance(expr, (int, float)):
        return expr
    tree = _parse(str(expr))

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in axes:
                raise RuleError(f"bound {expr!r} names {node.id!r}, which is not an axis (axes: {', '.join(sorted(axes))})")
            return axes[node.id]
        if isinstance(node, ast.UnaryOp):
            return -value(node.operand)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Call):
            return _CALLS[node.func.id](*(value(a) for a in node.args))  # type: ignore[attr-defined]
        raise RuleError(f"bound {expr!r}: unexpected {type(node).__name__}")

    return value(tree)


def axis_values(definition: Any, workload: Any) -> dict[str, int]:
    """Every axis of the definition with its value in this workload (constants and variables)."""
    values = {name: axis.value for name, axis in definition.axes.items() if getattr(axis, "type", None) == "const"}
    values.update({k: int(v) for k, v in workload.axes.items()})
    return values


# ---- checking rules against a definition


def validate(definition: Any, rules: Mapping[str, Any]) -> list[str]:
    """What is wrong with `rules` for `definition`, one line per problem (empty when usable)."""
    if not isinstance(rules, Mapping):
        return [f"{RULE_KEY} must be an object of input name -> rule, found {type(rules).__name__}"]
    problems = []
    axes = set(definition.axes)
    for name, rule in rules.items():
        where = f"{RULE_KEY}.{name}"
        spec = definition.inputs.get(name)
        if spec is None:
            problems.append(f"{where}: {definition.name} has no input {name!r}")
            continue
        if not isinstance(rule, Mapping) or rule.get("kind") not in KINDS:
            problems.append(f"{where}: needs a 'kind', one of {', '.join(sorted(KINDS))}")
            continue
        kind = rule["kind"]
        dtypes, required, optional = KINDS[kind]
        dtype = _dtype_name(spec)
        if dtype not in dtypes:
            problems.append(f"{where}: kind {kind!r} does not fit dtype {dtype}")
        if spec.shape is None and kind in TENSOR_ONLY:
            problems.append(f"{where}: kind {kind!r} needs a tensor, {name!r} is a scalar")
        if kind == "offsets" and spec.shape is not None and len(spec.shape) != 1:
            problems.append(f"{where}: offsets are one-dimensional, {name!r} has shape {spec.shape}")
        missing = required - set(rule)
        if missing:
            problems.append(f"{where}: kind {kind!r} needs {', '.join(sorted(missing))}")
        unknown = set(rule) - required - optional - COMMON
        if unknown:
            problems.append(f"{where}: unknown parameter(s) {', '.join(sorted(unknown))}")
        if rule.get("per", "call") not in ("call", "workload"):
            problems.append(f"{where}: per must be 'call' or 'workload'")
        if kind == "choice" and not (isinstance(rule.get("values"), list) and rule["values"]):
            problems.append(f"{where}: values must be a non-empty list")
        for param in EXPRESSION_PARAMS & set(rule):
            try:
                unknown_axes = expression_names(rule[param]) - axes
            except RuleError as exc:
                problems.append(f"{where}.{param}: {exc}")
                continue
            if unknown_axes:
                problems.append(f"{where}.{param}: names {', '.join(sorted(unknown_axes))}, not axes of {definition.name}")
    return problems


def _dtype_name(spec: Any) -> str:
    return getattr(spec.dtype, "value", spec.dtype)


# ---- where a definition's rules come from


def resolve(definition: Any, extras: Mapping[str, Any] | None = None, dataset_root: Path | None = None) -> dict[str, Any]:
    """The rules for `definition`: its own `input_rules` (from `extras`, or read from its file under
    `dataset_root`), else those of kda-mcp's embedded definition of the same name, as far as they fit
    (an official dataset's definitions carry no rules, and their integer inputs need them all the same).

    Rules of the definition itself must all be valid (RuleError otherwise); borrowed rules that do
    not fit (another input name, dtype or shape) are left out, with a log line.
    """
    own = None
    if extras is not None:
        own = extras.get(RULE_KEY)
        has_own = RULE_KEY in extras
    else:
        raw = _raw_definition(str(dataset_root), definition.name) if dataset_root is not None else None
        has_own = raw is not None and RULE_KEY in raw
        own = raw.get(RULE_KEY) if has_own and raw is not None else None
    if has_own:
        problems = validate(definition, own or {})
        if problems:
            raise RuleError(f"{definition.name}: " + "; ".join(problems))
        return dict(own or {})
    return borrowed(definition)


def borrowed(definition: Any) -> dict[str, Any]:
    """The embedded definition's rules for `definition`'s inputs that fit it exactly."""
    from kda_mcp.resources import sample_dataset_path

    raw = _raw_definition(str(sample_dataset_path()), definition.name)
    if not raw or not isinstance(raw.get(RULE_KEY), Mapping):
        return {}
    fitting = {}
    for name, rule in raw[RULE_KEY].items():
        ours, theirs = raw.get("inputs", {}).get(name), definition.inputs.get(name)
        if ours is None or theirs is None or ours.get("shape") != theirs.shape or ours.get("dtype") != _dtype_name(theirs):
            log.warning("input rule for %s.%s left out: the input differs from kda-mcp's definition", definition.name, name)
            continue
        if validate(definition, {name: rule}):
            log.warning("input rule for %s.%s left out: %s", definition.name, name, "; ".join(validate(definition, {name: rule})))
            continue
        fitting[name] = rule
    return fitting


KDA_KEYS = ("tolerance", "policy", "floor_check", "mutable_inputs", RULE_KEY)


def embedded_extras(definition: Any) -> dict[str, Any]:
    """kda-mcp's own keys (tolerance, policy, floor_check, mutable_inputs, input_rules) of the embedded
    definition of the same name, when its interface is the same: input and output names, shapes and
    dtypes, and constant axes. For a dataset loader that wants an official definition, which carries
    none of these, to be measured as kda-mcp's copy of it is (the MoE's 90%-matched tolerance)."""
    from kda_mcp.resources import sample_dataset_path

    raw = _raw_definition(str(sample_dataset_path()), definition.name)
    if not raw:
        return {}
    try:
        from flashinfer_bench.data import Definition

        ours = Definition.model_validate(raw)
    except Exception:  # noqa: BLE001 - an unreadable embedded file lends nothing
        return {}
    if _interface(ours) != _interface(definition):
        return {}
    return {k: raw[k] for k in KDA_KEYS if k in raw}


def _interface(definition: Any) -> tuple[Any, ...]:
    def tensors(specs: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
        return [(n, s.shape, _dtype_name(s)) for n, s in specs.items()]

    consts = {n: a.value for n, a in definition.axes.items() if getattr(a, "type", None) == "const"}
    return tensors(definition.inputs), tensors(definition.outputs), consts


@functools.lru_cache(maxsize=64)
def _raw_definition(root: str, name: str) -> dict[str, Any] | None:
    """The JSON object of definition `name` under `root`/definitions (by file name, else by scanning)."""
    folder = Path(root) / "definitions"
    if not folder.is_dir():
        return None
    candidates = sorted(folder.rglob(f"{name}.json"))
    for path in candidates + [p for p in sorted(folder.rglob("*.json")) if p not in candidates]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("name") == name:
            return data
    return None


# ---- making values


def workload_seed(uuid: str, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{uuid}/{name}".encode()).digest()[:8], "little") & ((1 << 62) - 1)


def call_seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{index}".encode()).digest()[:8], "little") & ((1 << 62) - 1)


def apply(
    definition: Any,
    workload: Any,
    values: list[Any],
    rules: Mapping[str, Any] | None,
    *,
    seed: int,
    device: Any,
    fixed: dict[str, Any] | None = None,
) -> list[Any]:
    """`values` (inputs in definition order, as gen_inputs made them) with every ruled `random`
    input replaced by a valid value, and every scalar as its declared dtype. `fixed` caches the
    per-workload values across calls (pass the same dict to every call of one workload)."""
    axes = axis_values(definition, workload)
    shapes = definition.get_input_shapes(workload.axes)
    out = list(values)
    for index, (name, spec) in enumerate(definition.inputs.items()):
        given = workload.inputs.get(name)
        rule = (rules or {}).get(name)
        if rule is not None and (given is None or given.type == "random"):
            per = rule.get("per") or ("workload" if spec.shape is None else "call")
            if per == "workload" and fixed is not None and name in fixed:
                out[index] = fixed[name]
            else:
                s = workload_seed(workload.uuid, name) if per == "workload" else call_seed(seed, index)
                try:
                    out[index] = generate(rule, shapes[index], _dtype_name(spec), axes, seed=s, device=device)
                except RuleError as exc:
                    raise RuleError(f"{definition.name}.{name} in workload {workload.uuid}: {exc}") from exc
                if per == "workload" and fixed is not None:
                    fixed[name] = out[index]
        if spec.shape is None:
            out[index] = coerce_scalar(out[index], _dtype_name(spec), what=f"{definition.name}.{name}")
    return out


def coerce_scalar(value: Any, dtype: str, *, what: str = "scalar") -> Any:
    """A scalar input as the Python number its declared dtype holds: a float32 scalar rounded to
    float32 (so a kernel that takes a float sees exactly what the reference sees), an integer
    checked against its type's range, a bool as bool."""
    import torch

    if hasattr(value, "item"):
        value = value.item()
    if dtype == "bool":
        return bool(value)
    if dtype in INT_DTYPES:
        if isinstance(value, float) and not value.is_integer():
            raise RuleError(f"{what}: {value!r} is not an integer, but the input is {dtype}")
        number = int(value)
        info = torch.iinfo(getattr(torch, dtype))
        if not info.min <= number <= info.max:
            raise RuleError(f"{what}: {number} does not fit {dtype}")
        return number
    if dtype in FLOAT_DTYPES and dtype != "float64":
        number = float(value)
        if math.isfinite(number):
            return float(torch.tensor(number, dtype=getattr(torch, dtype)).to(torch.float64).item())
        return number
    return float(value) if dtype == "float64" else value


def generate(rule: Mapping[str, Any], shape: list[int] | None, dtype: str, axes: Mapping[str, int], *, seed: int, device: Any) -> Any:
    """One value that obeys `rule`: a tensor of `shape` and `dtype` on `device`, or a Python scalar."""
    import torch

    kind = rule["kind"]
    torch_dtype = getattr(torch, dtype)
    if shape is None:  # scalars: drawn on the host
        gen = torch.Generator().manual_seed(seed)
        if kind == "choice":
            values = list(rule["values"])
            return values[int(torch.randint(len(values), (1,), generator=gen).item())]
        if kind == "int_range":
            low, high = _int_bounds(rule, axes)
            return int(torch.randint(low, high + 1, (1,), generator=gen, dtype=torch.int64).item())
        if kind == "uniform":
            low, high = float(evaluate(rule["low"], axes)), float(evaluate(rule["high"], axes))
            return low + (high - low) * float(torch.rand((1,), generator=gen, dtype=torch.float64).item())
        raise RuleError(f"kind {kind!r} needs a tensor")
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = [int(s) for s in shape]
    if kind == "int_range":
        low, high = _int_bounds(rule, axes)
        return torch.randint(low, high + 1, shape, generator=gen, device=device, dtype=torch.int64).to(torch_dtype)
    if kind == "choice":
        values = torch.tensor(list(rule["values"]), device=device)
        picks = torch.randint(len(rule["values"]), shape, generator=gen, device=device)
        return values[picks].to(torch_dtype)
    if kind == "uniform":
        low, high = float(evaluate(rule["low"], axes)), float(evaluate(rule["high"], axes))
        return (torch.rand(shape, generator=gen, device=device, dtype=torch.float32) * (high - low) + low).to(torch_dtype)
    if kind == "l2_normalized":
        rows = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        norm = float(rule.get("norm", 1.0))
        return (rows * (norm / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12))).to(torch_dtype)
    if kind == "indices":
        return _indices(rule, shape, torch_dtype, axes, gen, device)
    if kind == "page_table":
        return _page_table(rule, shape, torch_dtype, axes, gen, device)
    if kind == "offsets":
        return _offsets(rule, shape, torch_dtype, axes, gen, device)
    if kind == "fp8_pages_with_scales":
        return _fp8_pages(rule, shape, torch_dtype, axes, gen, device)
    raise RuleError(f"unknown kind {kind!r}")


def _int_bounds(rule: Mapping[str, Any], axes: Mapping[str, int]) -> tuple[int, int]:
    low, high = int(evaluate(rule["low"], axes)), int(evaluate(rule["high"], axes))
    if high < low:
        raise RuleError(f"empty range [{low}, {high}]")
    return low, high


def _distinct(rows: int, width: int, high: int, gen: Any, device: Any) -> Any:
    """[rows, width] values in [0, high), distinct within each row, in random order."""
    import torch

    if width > high:
        raise RuleError(f"cannot draw {width} distinct values below {high}")
    out = torch.empty((rows, width), dtype=torch.int64, device=device)
    step = max(1, CHUNK_ELEMENTS // max(high, 1))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        keys = torch.rand((stop - start, high), generator=gen, device=device)
        out[start:stop] = keys.topk(width, dim=1).indices
    return out


def _indices(rule: Mapping[str, Any], shape: list[int], dtype: Any, axes: Mapping[str, int], gen: Any, device: Any) -> Any:
    import torch

    if not shape:
        raise RuleError("indices need at least one axis")
    width = shape[-1]
    rows = math.prod(shape[:-1])
    high = int(evaluate(rule["high"], axes))
    unique = bool(rule.get("unique", True))
    pad = int(rule.get("pad", -1))
    cap = min(width, high) if unique else width
    valid_max = min(int(evaluate(rule.get("valid_max", width), axes)), cap)
    valid_min = max(0, min(int(evaluate(rule.get("valid_min", valid_max), axes)), valid_max))
    if high <= 0:
        valid_max = valid_min = 0
    if unique and valid_max > 0:
        body = _distinct(rows, valid_max, high, gen, device)
    elif valid_max > 0:
        body = torch.randint(high, (rows, valid_max), generator=gen, device=device)
    else:
        body = torch.empty((rows, 0), dtype=torch.int64, device=device)
    counts = torch.randint(valid_min, valid_max + 1, (rows,), generator=gen, device=device)
    full = torch.rand((rows,), generator=gen, device=device) < float(rule.get("full_fraction", 0.0))
    counts = torch.where(full, torch.full_like(counts, valid_max), counts)
    out = torch.full((rows, width), pad, dtype=torch.int64, device=device)
    out[:, :valid_max] = body
    out[torch.arange(width, device=device)[None, :] >= counts[:, None]] = pad
    return out.reshape(shape).to(dtype)


def _page_table(rule: Mapping[str, Any], shape: list[int], dtype: Any, axes: Mapping[str, int], gen: Any, device: Any) -> Any:
    import torch

    pages = int(evaluate(rule["pages"], axes))
    total = math.prod(shape)
    if total <= pages:
        return torch.randperm(pages, generator=gen, device=device)[:total].reshape(shape).to(dtype)
    width = shape[-1] if shape else 1
    return _distinct(total // max(width, 1), width, pages, gen, device).reshape(shape).to(dtype)


def _offsets(rule: Mapping[str, Any], shape: list[int], dtype: Any, axes: Mapping[str, int], gen: Any, device: Any) -> Any:
    import torch

    if len(shape) != 1 or shape[0] < 1:
        raise RuleError(f"offsets need shape [num_seqs + 1], got {shape}")
    sequences = shape[0] - 1
    total = int(evaluate(rule["total"], axes))
    least = int(evaluate(rule.get("min_length", 1), axes))
    spare = total - sequences * least
    if spare < 0 or (sequences == 0 and total != 0):
        raise RuleError(f"{total} tokens cannot make {sequences} sequences of at least {least}")
    cuts = torch.randint(spare + 1, (max(sequences - 1, 0),), generator=gen, device=device).sort().values
    edges = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), cuts, torch.full((1,), spare, dtype=torch.int64, device=device)])
    lengths = edges.diff() + least if sequences else edges[:0]
    return torch.cat([torch.zeros(1, dtype=torch.int64, device=device), lengths.cumsum(0)]).to(dtype)


def _fp8_pages(rule: Mapping[str, Any], shape: list[int], dtype: Any, axes: Mapping[str, int], gen: Any, device: Any) -> Any:
    import torch

    pages = shape[0]
    per_page = math.prod(shape[1:])
    head_dim = int(evaluate(rule["head_dim"], axes))
    page_size, rest = divmod(per_page, head_dim + 4)
    if rest or page_size == 0:
        raise RuleError(f"a page of {per_page} bytes does not hold page_size x ({head_dim} fp8 + 4 scale bytes)")
    low, high = float(rule.get("scale_low", 0.01)), float(rule.get("scale_high", 0.1))
    keys = torch.randn((pages, page_size * head_dim), generator=gen, device=device).clamp_(-2.0, 2.0).to(torch.float8_e4m3fn)
    scales = torch.rand((pages, page_size), generator=gen, device=device) * (high - low) + low
    packed = torch.cat([keys.view(torch.uint8), scales.contiguous().view(torch.uint8)], dim=1)
    return packed.view(dtype).reshape(shape)
