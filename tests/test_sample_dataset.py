"""The embedded sample dataset (resources/dataset): format, references, baselines, examples.

CPU tests load the dataset with flashinfer-bench's TraceSet and run the references and the
plain-PyTorch baselines. Tests marked `gpu` also run the example Triton solutions against the
references on every workload; they read the JSON directly, so they need torch, triton and a
CUDA device but not flashinfer-bench.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "resources" / "dataset"
GENERATOR = REPO / "resources" / "dataset_src" / "build_dataset.py"

EXPECTED = {
    "vector_add_fp32": "elementwise",
    "rmsnorm_h4096_bf16": "rmsnorm",
    "gemm_n4096_k4096_bf16": "gemm",
}
EXAMPLE_AUTHOR = "kda-examples"
BASELINE_AUTHOR = "baseline"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

has_cuda = torch.cuda.is_available()


# ---------------------------------------------------------------------------
# Helpers that read the dataset as plain JSON (usable without flashinfer-bench)
# ---------------------------------------------------------------------------


def raw_definition(name: str) -> Dict[str, Any]:
    return json.loads((DATASET / "definitions" / EXPECTED[name] / f"{name}.json").read_text())


def raw_workloads(name: str) -> List[Dict[str, Any]]:
    path = DATASET / "workloads" / EXPECTED[name] / f"{name}.jsonl"
    return [json.loads(line)["workload"] for line in path.read_text().splitlines() if line.strip()]


def raw_solutions(name: str, author: str) -> List[Dict[str, Any]]:
    folder = DATASET / "solutions" / author / EXPECTED[name] / name
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def shapes_of(specs: Dict[str, Any], defn: Dict[str, Any], axes: Dict[str, int]) -> Dict[str, Tuple[int, ...]]:
    values = {k: v["value"] for k, v in defn["axes"].items() if v["type"] == "const"}
    values.update(axes)
    return {n: tuple(values[a] for a in spec["shape"]) for n, spec in specs.items()}


def make_inputs(defn: Dict[str, Any], axes: Dict[str, int], device: str = "cpu", seed: int = 0) -> List[torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    shapes = shapes_of(defn["inputs"], defn, axes)
    return [
        torch.randn(shapes[n], dtype=DTYPES[spec["dtype"]], device=device, generator=gen)
        for n, spec in defn["inputs"].items()
    ]


def empty_outputs(defn: Dict[str, Any], axes: Dict[str, int], device: str = "cpu") -> List[torch.Tensor]:
    shapes = shapes_of(defn["outputs"], defn, axes)
    # Filled with NaN so that an output the solution forgets to write cannot pass.
    return [
        torch.full(shapes[n], float("nan"), dtype=DTYPES[spec["dtype"]], device=device)
        for n, spec in defn["outputs"].items()
    ]


def load_module(source: str, tmp_path: Path, tag: str):
    """Import source from a real file (triton.jit needs to read the function's source)."""
    path = tmp_path / f"{tag}.py"
    path.write_text(source)
    mod_name = f"_kda_sample_{tag}_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def reference_fn(defn: Dict[str, Any]) -> Callable[..., Any]:
    namespace: Dict[str, Any] = {}
    exec(compile(defn["reference"], f"<reference {defn['name']}>", "exec"), namespace)
    return namespace["run"]


def as_list(result: Any) -> List[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: Dict[str, float], what: str) -> None:
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert out.dtype == ref.dtype, f"{what}: dtype {out.dtype} != {ref.dtype}"
    o, r = out.float(), ref.float()
    assert torch.isfinite(o).all(), f"{what}: non-finite values"
    bad = (o - r).abs() > tol["atol"] + tol["rtol"] * r.abs()
    need = tol.get("required_matched_ratio", 1.0)
    matched = 1.0 - bad.float().mean().item()
    assert matched >= need, (
        f"{what}: {bad.sum().item()} of {bad.numel()} elements out of tolerance "
        f"(max abs err {(o - r).abs().max().item():.3g})"
    )


def run_dps(module, inputs: List[torch.Tensor], outputs: List[torch.Tensor], what: str) -> None:
    before = [t.clone() for t in inputs]
    ret = module.run(*inputs, *outputs)
    assert ret is None, f"{what}: destination-passing run() returned {type(ret).__name__}"
    for b, a in zip(before, inputs):
        assert torch.equal(b, a), f"{what}: modified an input"


# ---------------------------------------------------------------------------
# Format (flashinfer-bench's loader)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traceset():
    data = pytest.importorskip("flashinfer_bench.data")
    return data.TraceSet.from_path(str(DATASET))


def test_traceset_loads_exactly_the_sample_definitions(traceset):
    assert set(EXPECTED) <= set(traceset.definitions)  # the contest kernels ship beside the samples
    for name, op_type in EXPECTED.items():
        assert traceset.definitions[name].op_type == op_type
        assert "sample" in traceset.definitions[name].tags
    assert not traceset.traces


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_workloads(traceset, name):
    defn = traceset.definitions[name]
    traces = traceset.workloads[name]
    assert len(traces) >= 5
    var_axes = set(defn.var_axes)
    seen = set()
    for t in traces:
        assert t.is_workload_trace() and t.definition == name
        w = t.workload
        assert set(w.axes) == var_axes
        assert all(v > 0 for v in w.axes.values())
        assert set(w.inputs) == set(defn.inputs)
        assert all(spec.type in ("random", "scalar") for spec in w.inputs.values())
        assert str(uuid.UUID(w.uuid)) == w.uuid
        seen.add(tuple(sorted(w.axes.items())))
        # the plain-JSON shape helper used below agrees with flashinfer-bench
        ours = shapes_of(raw_definition(name)["inputs"], raw_definition(name), w.axes)
        assert [list(s) for s in ours.values()] == [list(s) for s in defn.get_input_shapes(w.axes)]
    assert len(seen) == len(traces), "duplicate axis values"


def test_workload_uuids_unique_across_dataset(traceset):
    uuids = [t.workload.uuid for ts in traceset.workloads.values() for t in ts]
    assert len(uuids) == len(set(uuids))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tolerance_present(name):
    tol = raw_definition(name).get("tolerance")
    assert isinstance(tol, dict)
    assert isinstance(tol["atol"], float) and tol["atol"] >= 0
    assert isinstance(tol["rtol"], float) and tol["rtol"] >= 0
    if "required_matched_ratio" in tol:
        assert 0 < tol["required_matched_ratio"] <= 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_solutions_present(traceset, name):
    sols = traceset.solutions[name]
    by_author = {}
    for s in sols:
        by_author.setdefault(s.author, []).append(s)
    assert set(by_author) == {EXAMPLE_AUTHOR, BASELINE_AUTHOR}
    for s in sols:
        assert s.definition == name
        assert s.spec.entry_point == "main.py::run"
        assert s.spec.destination_passing_style is True
        assert s.spec.target_hardware == ["cuda"]
    assert [s.spec.language.value for s in by_author[EXAMPLE_AUTHOR]] == ["triton"]
    assert [s.spec.language.value for s in by_author[BASELINE_AUTHOR]] == ["python"]


def test_generator_output_is_up_to_date():
    pytest.importorskip("flashinfer_bench.data")
    spec = importlib.util.spec_from_file_location("_kda_build_dataset", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.check(DATASET) == [], "run resources/dataset_src/build_dataset.py"


# ---------------------------------------------------------------------------
# References and baselines on CPU
# ---------------------------------------------------------------------------


def smallest_workload(name: str) -> Dict[str, int]:
    return min((w["axes"] for w in raw_workloads(name)), key=lambda a: sorted(a.values()))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_runs_on_cpu(name):
    defn = raw_definition(name)
    axes = smallest_workload(name)
    inputs = make_inputs(defn, axes)
    outs = as_list(reference_fn(defn)(*inputs))
    want = shapes_of(defn["outputs"], defn, axes)
    assert len(outs) == len(defn["outputs"])
    for (oname, spec), out in zip(defn["outputs"].items(), outs):
        assert isinstance(out, torch.Tensor)
        assert tuple(out.shape) == want[oname]
        assert out.dtype == DTYPES[spec["dtype"]]
        assert torch.isfinite(out.float()).all()


def test_reference_values_spot_checks():
    """Independent hand-written checks, so a wrong reference cannot agree with itself."""
    x = torch.tensor([1.0, -2.5, 3.25]), torch.tensor([0.5, 2.5, -1.0])
    assert torch.equal(reference_fn(raw_definition("vector_add_fp32"))(*x), torch.tensor([1.5, 0.0, 2.25]))

    h = torch.full((2, 4096), 2.0, dtype=torch.bfloat16)
    h[1] = -0.5
    w = torch.full((4096,), 3.0, dtype=torch.bfloat16)
    y = reference_fn(raw_definition("rmsnorm_h4096_bf16"))(h, w)
    # rms of a constant row is |c|, so y = sign(c) * w
    assert torch.allclose(y.float(), torch.tensor([[3.0], [-3.0]]).expand(2, 4096), atol=1e-2)

    a = torch.zeros(2, 4096, dtype=torch.bfloat16)
    a[0, :2] = torch.tensor([1.0, 2.0])
    a[1, 4095] = 1.0
    b = torch.zeros(4096, 4096, dtype=torch.bfloat16)
    b[7, :2] = torch.tensor([3.0, 4.0])  # C[0, 7] = 1*3 + 2*4 = 11
    b[9, 4095] = -2.0  # C[1, 9] = -2
    c = reference_fn(raw_definition("gemm_n4096_k4096_bf16"))(a, b)
    expect = torch.zeros(2, 4096)
    expect[0, 7], expect[1, 9] = 11.0, -2.0
    assert torch.equal(c.float(), expect)


def cpu_baseline_workloads() -> List[Tuple[str, Dict[str, int]]]:
    cases = []
    for name in sorted(EXPECTED):
        axes = sorted((w["axes"] for w in raw_workloads(name)), key=lambda a: sorted(a.values()))
        cases += [(name, a) for a in axes[:2]]  # the two smallest: e.g. M=1 and M=16
    return cases


@pytest.mark.parametrize("name,axes", cpu_baseline_workloads(), ids=lambda v: str(v))
def test_baseline_matches_reference_on_cpu(name, axes, tmp_path):
    defn = raw_definition(name)
    (sol,) = raw_solutions(name, BASELINE_AUTHOR)
    module = load_module(sol["sources"][0]["content"], tmp_path, "baseline")
    for seed in (0, 1):
        inputs = make_inputs(defn, axes, seed=seed)
        refs = as_list(reference_fn(defn)(*inputs))
        outs = empty_outputs(defn, axes)
        run_dps(module, inputs, outs, sol["name"])
        for out, ref in zip(outs, refs):
            assert_close(out, ref, defn["tolerance"], f"{sol['name']} {axes} seed {seed}")


# ---------------------------------------------------------------------------
# Example Triton solutions: static checks everywhere, execution on a GPU
# ---------------------------------------------------------------------------


def _is_triton_jit(dec: ast.expr) -> bool:
    target = dec.func if isinstance(dec, ast.Call) else dec
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "jit"
        and isinstance(target.value, ast.Name)
        and target.value.id == "triton"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_triton_example_source_shape(name):
    defn = raw_definition(name)
    (sol,) = raw_solutions(name, EXAMPLE_AUTHOR)
    assert sol["spec"]["language"] == "triton"
    source = sol["sources"][0]["content"]
    tree = ast.parse(source)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "run" in funcs
    params = [a.arg for a in funcs["run"].args.args]
    assert params == list(defn["inputs"]) + list(defn["outputs"])
    kernels = [f for f in funcs.values() if any(_is_triton_jit(d) for d in f.decorator_list)]
    assert kernels, "no @triton.jit kernel"
    assert "@triton.jit" in source
    # run() launches a kernel with a grid: kernel[grid](...)
    launches = [
        n
        for n in ast.walk(funcs["run"])
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Subscript)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id in {k.name for k in kernels}
    ]
    assert launches, "run() never launches a @triton.jit kernel"
    # run() returns nothing (destination-passing style)
    for node in ast.walk(funcs["run"]):
        if isinstance(node, ast.Return):
            assert node.value is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_baseline_source_shape(name):
    defn = raw_definition(name)
    (sol,) = raw_solutions(name, BASELINE_AUTHOR)
    tree = ast.parse(sol["sources"][0]["content"])
    (run,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    assert [a.arg for a in run.args.args] == list(defn["inputs"]) + list(defn["outputs"])


def gpu_cases() -> List[Tuple[str, str, Dict[str, int]]]:
    return [
        (name, author, w["axes"])
        for name in sorted(EXPECTED)
        for author in (EXAMPLE_AUTHOR, BASELINE_AUTHOR)
        for w in raw_workloads(name)
    ]


@pytest.mark.parametrize("name,author,axes", gpu_cases(), ids=lambda v: str(v))
@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda, reason="needs a CUDA GPU")
def test_solution_matches_reference_on_gpu(name, author, axes, tmp_path):
    if author == EXAMPLE_AUTHOR:
        pytest.importorskip("triton")
    defn = raw_definition(name)
    (sol,) = raw_solutions(name, author)
    module = load_module(sol["sources"][0]["content"], tmp_path, author.replace("-", "_"))
    for seed in (0, 1):
        inputs = make_inputs(defn, axes, device="cuda", seed=seed)
        refs = as_list(reference_fn(defn)(*inputs))
        outs = empty_outputs(defn, axes, device="cuda")
        run_dps(module, inputs, outs, sol["name"])
        torch.cuda.synchronize()
        for out, ref in zip(outs, refs):
            assert_close(out, ref, defn["tolerance"], f"{sol['name']} {axes} seed {seed}")
