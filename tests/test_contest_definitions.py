"""The five MLSys 2026 contest definitions kda-mcp ships, and the input rules that make their
constrained inputs valid. CPU only, seconds: contest sizes are checked where that is cheap (the
integer inputs of every workload, the blobs, the layout), and the math of every reference is
checked on reduced-size variants of the same definitions (same code, small constant axes) against
plain loops written here, in float64, independently of the references.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from flashinfer_bench.data import Definition, Workload

from kda_mcp.resources import sample_dataset_path
from kda_mcp.tools.dataset import Dataset
from kda_mcp.tools.evaluation import input_rules
from kda_mcp.tools.evaluation.input_rules import RuleError
from kda_mcp.tools.harness.inputs import make_inputs

REPO = Path(__file__).resolve().parents[1]
DATASET = sample_dataset_path()
TASKS = REPO / "resources" / "tasks"
WIKI = REPO / "wiki_index" / "pages"

MOE = "moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"
DSA = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"
INDEXER = "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"
GDN_DECODE = "gdn_decode_qk4_v8_d128_k_last"
GDN_PREFILL = "gdn_prefill_qk4_v8_d128_k_last"
CONTEST = {MOE: "moe", DSA: "dsa_paged", INDEXER: "dsa_paged", GDN_DECODE: "gdn", GDN_PREFILL: "gdn"}

# The official signatures (flashinfer-bench's FlashInfer-Trace definitions), written out here so a
# change to ours that breaks compatibility with the official dataset fails: name -> (shape, dtype).
OFFICIAL_INPUTS = {
    MOE: {
        "routing_logits": (["seq_len", "num_experts"], "float32"),
        "routing_bias": (["num_experts"], "bfloat16"),
        "hidden_states": (["seq_len", "hidden_size"], "float8_e4m3fn"),
        "hidden_states_scale": (["num_hidden_blocks", "seq_len"], "float32"),
        "gemm1_weights": (["num_local_experts", "gemm1_out_size", "hidden_size"], "float8_e4m3fn"),
        "gemm1_weights_scale": (["num_local_experts", "num_gemm1_out_blocks", "num_hidden_blocks"], "float32"),
        "gemm2_weights": (["num_local_experts", "hidden_size", "intermediate_size"], "float8_e4m3fn"),
        "gemm2_weights_scale": (["num_local_experts", "num_hidden_blocks", "num_intermediate_blocks"], "float32"),
        "local_expert_offset": (None, "int32"),
        "routed_scaling_factor": (None, "float32"),
    },
    DSA: {
        "q_nope": (["num_tokens", "num_qo_heads", "head_dim_ckv"], "bfloat16"),
        "q_pe": (["num_tokens", "num_qo_heads", "head_dim_kpe"], "bfloat16"),
        "ckv_cache": (["num_pages", "page_size", "head_dim_ckv"], "bfloat16"),
        "kpe_cache": (["num_pages", "page_size", "head_dim_kpe"], "bfloat16"),
        "sparse_indices": (["num_tokens", "topk"], "int32"),
        "sm_scale": (None, "float32"),
    },
    INDEXER: {
        "q_index_fp8": (["batch_size", "num_index_heads", "index_head_dim"], "float8_e4m3fn"),
        "k_index_cache_fp8": (["num_pages", "page_size", "kv_cache_num_heads", "head_dim_with_scale"], "int8"),
        "weights": (["batch_size", "num_index_heads"], "float32"),
        "seq_lens": (["batch_size"], "int32"),
        "block_table": (["batch_size", "max_num_pages"], "int32"),
    },
    GDN_DECODE: {
        "q": (["batch_size", "seq_len", "num_q_heads", "head_size"], "bfloat16"),
        "k": (["batch_size", "seq_len", "num_k_heads", "head_size"], "bfloat16"),
        "v": (["batch_size", "seq_len", "num_v_heads", "head_size"], "bfloat16"),
        "state": (["batch_size", "num_v_heads", "head_size", "head_size"], "float32"),
        "A_log": (["num_v_heads"], "float32"),
        "a": (["batch_size", "seq_len", "num_v_heads"], "bfloat16"),
        "dt_bias": (["num_v_heads"], "float32"),
        "b": (["batch_size", "seq_len", "num_v_heads"], "bfloat16"),
        "scale": (None, "float32"),
    },
    GDN_PREFILL: {
        "q": (["total_seq_len", "num_q_heads", "head_size"], "bfloat16"),
        "k": (["total_seq_len", "num_k_heads", "head_size"], "bfloat16"),
        "v": (["total_seq_len", "num_v_heads", "head_size"], "bfloat16"),
        "state": (["num_seqs", "num_v_heads", "head_size", "head_size"], "float32"),
        "A_log": (["num_v_heads"], "float32"),
        "a": (["total_seq_len", "num_v_heads"], "bfloat16"),
        "dt_bias": (["num_v_heads"], "float32"),
        "b": (["total_seq_len", "num_v_heads"], "bfloat16"),
        "cu_seqlens": (["len_cu_seqlens"], "int64"),
        "scale": (None, "float32"),
    },
}
OFFICIAL_OUTPUTS = {
    MOE: {"output": (["seq_len", "hidden_size"], "bfloat16")},
    DSA: {"output": (["num_tokens", "num_qo_heads", "head_dim_ckv"], "bfloat16"), "lse": (["num_tokens", "num_qo_heads"], "float32")},
    INDEXER: {"topk_indices": (["batch_size", "topk"], "int32")},
    GDN_DECODE: {"output": (["batch_size", "seq_len", "num_v_heads", "head_size"], "bfloat16"), "new_state": (["batch_size", "num_v_heads", "head_size", "head_size"], "float32")},
    GDN_PREFILL: {"output": (["total_seq_len", "num_v_heads", "head_size"], "bfloat16"), "new_state": (["num_seqs", "num_v_heads", "head_size", "head_size"], "float32")},
}
OFFICIAL_CONSTS = {
    MOE: {"num_experts": 256, "num_local_experts": 32, "hidden_size": 7168, "intermediate_size": 2048, "gemm1_out_size": 4096, "num_hidden_blocks": 56, "num_intermediate_blocks": 16, "num_gemm1_out_blocks": 32},
    DSA: {"num_qo_heads": 16, "head_dim_ckv": 512, "head_dim_kpe": 64, "page_size": 64, "topk": 2048},
    INDEXER: {"num_index_heads": 64, "index_head_dim": 128, "page_size": 64, "topk": 2048, "kv_cache_num_heads": 1, "head_dim_with_scale": 132},
    GDN_DECODE: {"seq_len": 1, "num_q_heads": 4, "num_k_heads": 4, "num_v_heads": 8, "head_size": 128},
    GDN_PREFILL: {"num_q_heads": 4, "num_k_heads": 4, "num_v_heads": 8, "head_size": 128},
}
OFFICIAL_VARS = {MOE: {"seq_len"}, DSA: {"num_tokens", "num_pages"}, INDEXER: {"batch_size", "max_num_pages", "num_pages"}, GDN_DECODE: {"batch_size"}, GDN_PREFILL: {"total_seq_len", "num_seqs", "len_cu_seqlens"}}


# ---- helpers


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset.load(DATASET)


def raw(name: str) -> dict[str, Any]:
    return json.loads((DATASET / "definitions" / CONTEST[name] / f"{name}.json").read_text())


def raw_workload(name: str) -> dict[str, Any]:
    line = (DATASET / "workloads" / CONTEST[name] / f"{name}.jsonl").read_text().splitlines()[0]
    return json.loads(line)["workload"]


def reference_of(definition: Definition | dict[str, Any]) -> dict[str, Any]:
    source = definition["reference"] if isinstance(definition, dict) else definition.reference
    namespace: dict[str, Any] = {"__name__": "ref"}
    exec(compile(source, "<reference>", "exec"), namespace)
    return namespace


def small(name: str, consts: dict[str, int], axes: dict[str, int], inputs: dict[str, Any] | None = None) -> tuple[Definition, Workload, dict[str, Any]]:
    """The shipped definition with smaller constant axes (same reference, same rules) and a workload."""
    data = copy.deepcopy(raw(name))
    for axis, value in consts.items():
        data["axes"][axis]["value"] = value
    definition = Definition.model_validate(data)
    specs = {n: {"type": "random"} for n in definition.inputs} | (inputs or {})
    workload = Workload.model_validate({"axes": axes, "inputs": specs, "uuid": f"small-{name}-{sorted(axes.items())}"})
    return definition, workload, data.get("input_rules", {})


SMALL = {
    MOE: {"hidden_size": 256, "num_hidden_blocks": 2, "intermediate_size": 128, "num_intermediate_blocks": 1, "gemm1_out_size": 256, "num_gemm1_out_blocks": 2},
    DSA: {"num_qo_heads": 4, "head_dim_ckv": 32, "head_dim_kpe": 16},
    INDEXER: {"num_index_heads": 8, "index_head_dim": 32, "head_dim_with_scale": 36},
    GDN_DECODE: {"head_size": 16},
    GDN_PREFILL: {"head_size": 16},
}
SMALL_AXES = {
    MOE: {"seq_len": 9},
    DSA: {"num_tokens": 4, "num_pages": 40},
    INDEXER: {"batch_size": 3, "max_num_pages": 40, "num_pages": 130},
    GDN_DECODE: {"batch_size": 3},
    GDN_PREFILL: {"total_seq_len": 40, "num_seqs": 3, "len_cu_seqlens": 4},
}


def scalar_placeholders(definition: Definition, workload: Workload) -> list[Any]:
    """Inputs as gen_inputs would hand them over, without making the (large) unruled tensors."""
    values = []
    for name, spec in definition.inputs.items():
        given = workload.inputs.get(name)
        values.append(given.value if given is not None and given.type == "scalar" else (0 if spec.shape is None else None))
    return values


def ruled_inputs(definition: Definition, workload: Workload, seed: int, only: set[str] | None = None) -> dict[str, Any]:
    rules = input_rules.resolve(definition, raw(definition.name))
    rules = {k: v for k, v in rules.items() if only is None or k in only}
    values = input_rules.apply(definition, workload, scalar_placeholders(definition, workload), rules, seed=seed, device="cpu")
    return dict(zip(definition.inputs, values))


# ---- the dataset


def test_dataset_ships_the_contest_definitions_beside_the_samples(dataset):
    assert dataset.problems == []
    assert {"vector_add_fp32", "rmsnorm_h4096_bf16", "gemm_n4096_k4096_bf16"} <= set(dataset.names())
    for name, op_type in CONTEST.items():
        definition = dataset.definition(name)
        assert definition.op_type == op_type
        assert "sample" not in definition.tags  # list_definitions(tag="sample") stays the three samples
        assert dataset.workloads(name), name


@pytest.mark.parametrize("name", sorted(CONTEST))
def test_official_names_axes_and_layouts(dataset, name):
    definition = dataset.definition(name)
    assert {n: (s.shape, s.dtype.value) for n, s in definition.inputs.items()} == OFFICIAL_INPUTS[name]
    assert list(definition.inputs) == list(OFFICIAL_INPUTS[name])  # the calling order is the interface
    assert {n: (s.shape, s.dtype.value) for n, s in definition.outputs.items()} == OFFICIAL_OUTPUTS[name]
    consts = {n: a.value for n, a in definition.axes.items() if a.type == "const"}
    assert consts == OFFICIAL_CONSTS[name]
    assert set(definition.var_axes) == OFFICIAL_VARS[name]
    assert input_rules.validate(definition, dataset.extras(name).get("input_rules", {})) == []


def test_tolerances_and_workload_axes(dataset):
    moe = dataset.tolerance(MOE)
    assert (moe.atol, moe.rtol, moe.required_matched_ratio) == (1.0, 0.3, 0.9)
    assert sorted(w.axes["seq_len"] for w in dataset.workloads(MOE)) == [1, 7, 14, 15, 16, 32, 52, 53, 54, 55, 56, 57, 58, 59, 62, 80, 901, 11948, 14107]
    assert {w.axes["num_tokens"] for w in dataset.workloads(DSA)} == set(range(1, 9))
    assert max(w.axes["num_pages"] for w in dataset.workloads(DSA)) >= 4096
    assert {w.axes["batch_size"] for w in dataset.workloads(GDN_DECODE)} >= {1, 64}
    prefill = dataset.workloads(GDN_PREFILL)
    assert any(w.axes["num_seqs"] == 1 and w.axes["total_seq_len"] <= 128 for w in prefill)
    assert any(w.axes["num_seqs"] > 1 and w.axes["total_seq_len"] == 8192 for w in prefill)
    for name in CONTEST:
        for w in dataset.workloads(name):
            assert set(w.inputs) == set(dataset.definition(name).inputs)
            if name == GDN_PREFILL:
                assert w.axes["len_cu_seqlens"] == w.axes["num_seqs"] + 1
            if name == INDEXER:
                assert 2048 <= w.axes["max_num_pages"] * 64 and w.axes["batch_size"] * w.axes["max_num_pages"] <= w.axes["num_pages"]
    for name in (MOE, DSA, INDEXER):
        assert dataset.extras(name)["floor_check"] is False  # a kernel reads far less than every input


def test_moe_bias_blob_loads_as_flashinfer_bench_loads_it(dataset):
    from flashinfer_bench.bench.utils import load_safetensors

    definition = dataset.definition(MOE)
    blobs = set()
    for workload in dataset.workloads(MOE):
        spec = workload.inputs["routing_bias"]
        assert spec.type == "safetensors" and not Path(spec.path).is_absolute()
        blobs.add(spec.path)
        assert workload.inputs["routed_scaling_factor"].type == "scalar" and workload.inputs["routed_scaling_factor"].value == 2.5
    assert len(blobs) == 1
    loaded = load_safetensors(definition, dataset.workloads(MOE)[0], DATASET)
    bias = loaded["routing_bias"]
    assert bias.shape == (256,) and bias.dtype == torch.bfloat16
    assert 0.01 < float(bias.float().std()) < 0.2 and bool(torch.isfinite(bias.float()).all())


def test_offsets_fixed_where_the_workload_says_and_random_elsewhere(dataset):
    offsets = [w.inputs["local_expert_offset"] for w in dataset.workloads(MOE)]
    fixed = [o.value for o in offsets if o.type == "scalar"]
    assert set(fixed) == {0, 32, 64, 96, 128, 160, 192, 224}
    assert sum(o.type == "random" for o in offsets) == 2


# ---- the rules


def _toy(inputs: dict[str, Any], axes: dict[str, Any], rules: dict[str, Any] | None = None) -> Definition:
    data = {
        "name": "toy",
        "op_type": "toy",
        "axes": axes,
        "inputs": inputs,
        "outputs": {"out": {"shape": None, "dtype": "float32"}},
        "reference": "def run(*args):\n    return 0.0\n",
    }
    return Definition.model_validate(data)


def test_expressions_and_validation_messages():
    axes = {"num_pages": 10, "page_size": 64, "topk": 2048}
    assert input_rules.evaluate("min(topk, num_pages * page_size)", axes) == 640
    assert input_rules.evaluate("(num_pages + 1) // 2 - 1", axes) == 4
    assert input_rules.evaluate(7, axes) == 7
    for bad in ("__import__('os')", "num_pages.real", "topk if 1 else 2", "[1]"):
        with pytest.raises(RuleError):
            input_rules.evaluate(bad, axes)
    with pytest.raises(RuleError, match="not an axis"):
        input_rules.evaluate("pages * 2", axes)
    definition = _toy(
        {"idx": {"shape": ["n"], "dtype": "int32"}, "x": {"shape": ["n"], "dtype": "float32"}, "s": {"shape": None, "dtype": "int32"}},
        {"n": {"type": "var"}},
    )
    problems = input_rules.validate(
        definition,
        {
            "idx": {"kind": "indices", "high": "m * 2"},
            "x": {"kind": "page_table", "pages": 4},
            "s": {"kind": "offsets", "total": 3},
            "nope": {"kind": "choice", "values": [1]},
            "y": "not a rule",
        },
    )
    text = "\n".join(problems)
    assert "names m" in text and "does not fit dtype float32" in text and "needs a tensor" in text and "no input 'nope'" in text
    assert input_rules.validate(definition, {"idx": {"kind": "indices", "high": "n", "per": "sometimes"}}) == ["input_rules.idx: per must be 'call' or 'workload'"]
    assert input_rules.validate(definition, {"idx": {"kind": "int_range", "low": 0}}) == ["input_rules.idx: kind 'int_range' needs high"]


def test_every_kind_makes_valid_values():
    gen_axes = {"n": 6, "k": 50, "pages": 40, "total": 97}
    cpu = "cpu"

    idx = input_rules.generate({"kind": "indices", "high": "pages * 2", "valid_min": 0, "valid_max": "k", "full_fraction": 0.5}, [6, 50], "int32", gen_axes, seed=1, device=cpu)
    assert idx.dtype == torch.int32 and idx.shape == (6, 50)
    for row in idx.tolist():
        n = sum(v >= 0 for v in row)
        assert row[:n] == [v for v in row if v >= 0] and all(v == -1 for v in row[n:])  # valid first, then padding
        assert len(set(row[:n])) == n and all(0 <= v < 80 for v in row[:n])

    capped = input_rules.generate({"kind": "indices", "high": 7}, [3, 10], "int64", gen_axes, seed=2, device=cpu)
    assert all(sorted(r[:7]) == list(range(7)) and r[7:] == [-1] * 3 for r in capped.tolist())  # at most `high` distinct rows

    table = input_rules.generate({"kind": "page_table", "pages": "pages"}, [4, 10], "int32", gen_axes, seed=3, device=cpu)
    assert sorted(table.flatten().tolist()) == sorted(set(table.flatten().tolist())) and int(table.max()) < 40
    crowded = input_rules.generate({"kind": "page_table", "pages": 12}, [4, 10], "int32", gen_axes, seed=3, device=cpu)
    assert all(len(set(r)) == 10 and max(r) < 12 for r in crowded.tolist())

    cu = input_rules.generate({"kind": "offsets", "total": "total", "min_length": 2}, [8], "int64", gen_axes, seed=4, device=cpu).tolist()
    assert cu[0] == 0 and cu[-1] == 97 and all(b - a >= 2 for a, b in zip(cu, cu[1:]))
    assert input_rules.generate({"kind": "offsets", "total": 5}, [2], "int64", gen_axes, seed=4, device=cpu).tolist() == [0, 5]
    with pytest.raises(RuleError, match="cannot make"):
        input_rules.generate({"kind": "offsets", "total": 3}, [5], "int64", gen_axes, seed=4, device=cpu)

    unit = input_rules.generate({"kind": "l2_normalized"}, [5, 3, 16], "bfloat16", gen_axes, seed=5, device=cpu)
    assert unit.dtype == torch.bfloat16 and torch.allclose(unit.float().norm(dim=-1), torch.ones(5, 3), atol=2e-2)

    ranged = input_rules.generate({"kind": "int_range", "low": 1, "high": "k"}, [1000], "int32", gen_axes, seed=6, device=cpu)
    assert int(ranged.min()) >= 1 and int(ranged.max()) <= 50 and len(set(ranged.tolist())) > 40
    assert input_rules.generate({"kind": "choice", "values": [3, 9]}, None, "int32", gen_axes, seed=7, device=cpu) in (3, 9)
    assert 0.5 <= input_rules.generate({"kind": "uniform", "low": 0.5, "high": 0.75}, None, "float32", gen_axes, seed=7, device=cpu) < 0.75

    cache = input_rules.generate({"kind": "fp8_pages_with_scales", "head_dim": 32, "scale_low": 0.25, "scale_high": 0.5}, [3, 64, 1, 36], "int8", gen_axes, seed=8, device=cpu)
    keys, scales = _unpack_pages(cache, 32)
    assert torch.isfinite(keys).all() and keys.abs().max() <= 2.0 and (scales >= 0.25).all() and (scales < 0.5).all()


def test_draws_are_seeded_per_call_or_per_workload():
    definition = _toy({"i": {"shape": ["n"], "dtype": "int32"}, "w": {"shape": ["n"], "dtype": "int32"}, "s": {"shape": None, "dtype": "int32"}}, {"n": {"type": "var"}})
    rules = {"i": {"kind": "int_range", "low": 0, "high": 10**6}, "w": {"kind": "int_range", "low": 0, "high": 10**6, "per": "workload"}, "s": {"kind": "choice", "values": list(range(100))}}
    workload = Workload.model_validate({"axes": {"n": 64}, "inputs": {"i": {"type": "random"}, "w": {"type": "random"}, "s": {"type": "random"}}, "uuid": "u1"})
    other = Workload.model_validate({"axes": {"n": 64}, "inputs": {"i": {"type": "random"}, "w": {"type": "random"}, "s": {"type": "random"}}, "uuid": "u2"})

    def draw(w, seed):
        return input_rules.apply(definition, w, [None, None, 0], rules, seed=seed, device="cpu")

    a, b, again = draw(workload, 1), draw(workload, 2), draw(workload, 1)
    assert torch.equal(a[0], again[0]) and not torch.equal(a[0], b[0])  # per call: the seed decides
    assert torch.equal(a[1], b[1]) and a[2] == b[2]  # per workload (and scalars by default): the uuid decides
    assert not torch.equal(a[1], draw(other, 1)[1])
    cached: dict[str, Any] = {}
    first = input_rules.apply(definition, workload, [None, None, 0], rules, seed=5, device="cpu", fixed=cached)
    assert set(cached) == {"w", "s"} and input_rules.apply(definition, workload, [None, None, 0], rules, seed=6, device="cpu", fixed=cached)[1] is first[1]


def test_a_rule_never_replaces_a_workload_value():
    definition = _toy({"i": {"shape": ["n"], "dtype": "int64"}, "s": {"shape": None, "dtype": "int32"}}, {"n": {"type": "var"}})
    rules = {"i": {"kind": "offsets", "total": 10}, "s": {"kind": "choice", "values": [32, 64]}}
    blob = torch.tensor([0, 4, 10])
    workload = Workload.model_validate({"axes": {"n": 3}, "inputs": {"i": {"type": "safetensors", "path": "x.safetensors", "tensor_key": "i"}, "s": {"type": "scalar", "value": 7}}, "uuid": "w"})
    values = input_rules.apply(definition, workload, [blob, 7], rules, seed=1, device="cpu")
    assert values[0] is blob and values[1] == 7


def test_scalars_come_as_their_declared_dtype():
    assert input_rules.coerce_scalar(0.1352337788608801, "float32") == float(torch.tensor(0.1352337788608801, dtype=torch.float32).item())
    assert input_rules.coerce_scalar(0.1, "float64") == 0.1
    assert input_rules.coerce_scalar(1, "float32") == 1.0 and isinstance(input_rules.coerce_scalar(1, "float32"), float)
    assert input_rules.coerce_scalar(1.0, "bfloat16") == 1.0 and input_rules.coerce_scalar(1.001, "bfloat16") == 1.0
    assert input_rules.coerce_scalar(64.0, "int32") == 64 and isinstance(input_rules.coerce_scalar(64.0, "int32"), int)
    assert input_rules.coerce_scalar(0, "bool") is False and input_rules.coerce_scalar(torch.tensor(3), "int64") == 3
    with pytest.raises(RuleError, match="not an integer"):
        input_rules.coerce_scalar(2.5, "int32")
    with pytest.raises(RuleError, match="does not fit"):
        input_rules.coerce_scalar(300, "int8")
    assert input_rules.coerce_scalar(float("inf"), "float32") == float("inf")


def test_an_official_definition_without_rules_borrows_ours_where_they_fit(tmp_path):
    official = raw(INDEXER)
    official.pop("input_rules")
    official.pop("tolerance")
    definition = Definition.model_validate(official)
    assert set(input_rules.resolve(definition, extras={})) == {"k_index_cache_fp8", "seq_lens", "block_table"}
    # a dataset folder read directly (the judge without rules in its spec, make_inputs in a child)
    folder = tmp_path / "definitions" / "dsa_paged"
    folder.mkdir(parents=True)
    (folder / f"{INDEXER}.json").write_text(json.dumps(official))
    assert set(input_rules.resolve(definition, dataset_root=tmp_path)) == {"k_index_cache_fp8", "seq_lens", "block_table"}
    # an input that differs from ours (here seq_lens as int64) keeps its plain random values
    official["inputs"]["seq_lens"]["dtype"] = "int64"
    assert set(input_rules.resolve(Definition.model_validate(official), extras={})) == {"k_index_cache_fp8", "block_table"}
    # a definition's own rules are used as they are, and must be valid
    assert input_rules.resolve(definition, extras={"input_rules": {}}) == {}
    with pytest.raises(RuleError, match="no input"):
        input_rules.resolve(definition, extras={"input_rules": {"missing": {"kind": "choice", "values": [1]}}})
    assert input_rules.resolve(Definition.model_validate(raw(GDN_DECODE) | {"name": "unknown_def"}), extras={}) == {}


def test_embedded_extras_lend_kda_keys_to_an_official_copy_with_the_same_interface():
    official = raw(MOE)
    for key in ("tolerance", "policy", "floor_check", "input_rules"):
        official.pop(key)
    lent = input_rules.embedded_extras(Definition.model_validate(official))
    assert lent["tolerance"] == {"atol": 1.0, "rtol": 0.3, "required_matched_ratio": 0.9}
    assert lent["floor_check"] is False and "local_expert_offset" in lent["input_rules"]
    changed = copy.deepcopy(official)
    changed["axes"]["hidden_size"]["value"] = 4096
    assert input_rules.embedded_extras(Definition.model_validate(changed)) == {}
    renamed = copy.deepcopy(official)
    renamed["outputs"] = {"out": renamed["outputs"]["output"]}
    assert input_rules.embedded_extras(Definition.model_validate(renamed)) == {}


def test_the_judge_input_maker_uses_rules_and_fixes_per_workload_values():
    """InputMaker (the judge's) on a small indexer: rules from the spec, valid inputs every call,
    the per-workload lengths the same in every call, and the reference computed on them."""
    from kda_mcp.tools.evaluation.workload_inputs import InputMaker

    definition, workload, rules = small(INDEXER, SMALL[INDEXER], SMALL_AXES[INDEXER])
    namespace = reference_of(definition)

    class Spec:
        input_rules = rules

    class FakeJudge:
        device = torch.device("cpu")
        dataset_root = DATASET
        spec = Spec()

        def __init__(self) -> None:
            self.definition = definition
            self.reference = namespace["run"]

    maker = InputMaker(FakeJudge(), workload)
    assert maker.rules == rules and maker.scalars == {}
    one, two = maker.make(11), maker.make(12)
    names = list(definition.inputs)
    assert torch.equal(one[names.index("seq_lens")], two[names.index("seq_lens")])
    assert not torch.equal(one[names.index("block_table")], two[names.index("block_table")])
    for values in (one, two):
        check_indexer_inputs(dict(zip(names, values)), workload.axes, head_dim=32)
    [chosen] = maker.reference(12)
    assert chosen.shape == (3, 2048) and maker.references_differ([11, 12])


@pytest.mark.parametrize("name", sorted(CONTEST))
def test_the_judge_lays_out_and_checks_small_variants_of_every_definition(name):
    """The judge's InputMaker on a small variant of each definition, rules resolved from the dataset as
    the judge does without a spec field: layout with scalars taking no memory, output shapes, seeded
    inputs, references that differ between seeds."""
    from kda_mcp.tools.evaluation.workload_inputs import InputMaker

    blob = {"routing_bias": raw_workload(MOE)["inputs"]["routing_bias"]} if name == MOE else None  # the judge's blob path too
    definition, workload, rules = small(name, SMALL[name], SMALL_AXES[name], inputs=blob)
    namespace = reference_of(definition)

    class FakeJudge:
        device = torch.device("cpu")
        dataset_root = DATASET

        def __init__(self) -> None:
            self.definition = definition
            self.reference = namespace["run"]

    maker = InputMaker(FakeJudge(), workload)
    assert maker.rules == rules  # borrowed by name from the embedded dataset: same inputs, same rules
    scalars = [n for n, spec in definition.inputs.items() if spec.shape is None]
    assert set(maker.scalars) == set(scalars)
    placed, total = maker.layout(sets=2)
    assert total > 0 and all(bool(item.get("scalar")) == (item["name"] in scalars) for entry in placed for item in entry["inputs"])
    shapes = definition.get_output_shapes(workload.axes)
    assert [spec[2] for spec in maker.output_specs()] == [list(s) for s in shapes]
    a, b = maker.make(21), maker.make(21)
    assert all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))
    if blob:
        assert maker.blobs and torch.equal(a[list(definition.inputs).index("routing_bias")], maker.blobs["routing_bias"])
    outputs = maker.reference(21)
    assert [list(o.shape) for o in outputs] == [list(s) for s in shapes]
    assert maker.references_differ([21, 22])


# ---- every workload's constrained inputs, at contest size


def check_indexer_inputs(values: dict[str, Any], axes: dict[str, int], *, head_dim: int = 128) -> None:
    lengths = values["seq_lens"]
    table = values["block_table"]
    assert lengths.dtype == torch.int32 and table.dtype == torch.int32
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= axes["max_num_pages"] * 64
    flat = table.flatten().tolist()
    assert len(set(flat)) == len(flat) and min(flat) >= 0 and max(flat) < axes["num_pages"]
    cache = values.get("k_index_cache_fp8")
    if cache is not None:
        keys, scales = _unpack_pages(cache, head_dim)
        assert torch.isfinite(keys).all() and (scales >= 0.01).all() and (scales < 0.1).all()


@pytest.mark.parametrize("name", sorted(CONTEST))
def test_constrained_inputs_are_valid_for_every_workload(dataset, name):
    definition = dataset.definition(name)
    for workload in dataset.workloads(name):
        axes = {**{n: a.value for n, a in definition.axes.items() if a.type == "const"}, **workload.axes}
        if name == INDEXER and axes["num_pages"] > 1024:  # the key cache of the big ones costs seconds on a CPU: check its layout on the rest
            values = ruled_inputs(definition, workload, seed=3, only={"seq_lens", "block_table"})
            values.pop("k_index_cache_fp8")
        else:
            values = ruled_inputs(definition, workload, seed=3)
        if name == DSA:
            indices = values["sparse_indices"]
            assert indices.dtype == torch.int32 and indices.shape == (axes["num_tokens"], 2048)
            rows = axes["num_pages"] * 64
            for row in indices.tolist():
                n = sum(v >= 0 for v in row)
                assert all(v == -1 for v in row[n:]) and len(set(row[:n])) == n and all(0 <= v < rows for v in row[:n])
                assert n <= min(2048, rows)
            assert values["sm_scale"] == pytest.approx(0.1352337788608801, rel=1e-7)
        elif name == INDEXER:
            check_indexer_inputs(values, axes)
            assert torch.equal(values["seq_lens"], ruled_inputs(definition, workload, seed=4, only={"seq_lens"})["seq_lens"])  # once per workload
        elif name == GDN_PREFILL:
            cu = values["cu_seqlens"]
            assert cu.dtype == torch.int64 and cu.shape == (axes["len_cu_seqlens"],)
            steps = cu.diff()
            assert int(cu[0]) == 0 and int(cu[-1]) == axes["total_seq_len"] and bool((steps >= 1).all())
            assert torch.equal(cu, ruled_inputs(definition, workload, seed=4, only={"cu_seqlens"})["cu_seqlens"])  # once per workload
        if name in (GDN_DECODE, GDN_PREFILL):
            for key in ("q", "k"):
                assert torch.allclose(values[key].float().norm(dim=-1), torch.ones(()), atol=2e-2)
            assert values["scale"] in (0.0, pytest.approx(1 / math.sqrt(128), rel=1e-7))
        if name == MOE:
            assert values["local_expert_offset"] in range(0, 256, 32) and isinstance(values["local_expert_offset"], int)
            assert values["routed_scaling_factor"] == 2.5


# ---- every reference runs on the real input path (make_inputs, rules, blobs), small variants


@pytest.mark.parametrize("name", sorted(CONTEST))
def test_reference_runs_on_generated_inputs(name):
    definition, workload, rules = small(name, SMALL[name], SMALL_AXES[name])
    values = make_inputs(definition, workload, seed=7, device="cpu", dataset_root=DATASET, rules=rules)
    result = reference_of(definition)["run"](*values)
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    shapes = definition.get_output_shapes(workload.axes)
    for out, shape, spec in zip(outputs, shapes, definition.outputs.values()):
        assert list(out.shape) == list(shape) and str(out.dtype).removeprefix("torch.") == spec.dtype.value
        if out.dtype.is_floating_point and name != DSA:
            assert torch.isfinite(out.float()).all()
    if name == DSA:
        valid = values[list(definition.inputs).index("sparse_indices")] >= 0
        lse = outputs[1]
        assert torch.isfinite(lse[valid.any(dim=-1)]).all()
        assert (lse[~valid.any(dim=-1)] == float("-inf")).all()


def test_defaults_resolve_the_same_rules_without_being_told(dataset):
    """make_inputs with rules=None (the profile, sanitizer and first-call children) finds the same rules."""
    definition = dataset.definition(GDN_PREFILL)
    assert input_rules.resolve(definition, dataset_root=DATASET) == raw(GDN_PREFILL)["input_rules"]
    assert input_rules.resolve(definition, dataset.extras(GDN_PREFILL)) == raw(GDN_PREFILL)["input_rules"]


# ---- the math of each reference against plain loops (float64), small sizes


def gdn_step_loop(q, k, v, state_vk, A_log, a, dt_bias, b, scale):
    """One gated delta step for one head, the issue's formulas written out: returns (o, S_new [V, K])."""
    x = float(a) + float(dt_bias)
    softplus = x if x > 20 else math.log1p(math.exp(x))
    g = math.exp(-math.exp(float(A_log)) * softplus)
    beta = 1.0 / (1.0 + math.exp(-float(b)))
    S = state_vk.double().T.clone()  # [K, V]
    S = g * S
    r = k.double() @ S
    u = beta * v.double() + (1 - beta) * r
    S = S + torch.outer(k.double(), u - r)
    return scale * (q.double() @ S), S.T


def decode_inputs(batch: int, head: int, seed: int) -> list[Any]:
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(batch, 1, 4, head, generator=gen), dim=-1).to(torch.bfloat16)
    k = torch.nn.functional.normalize(torch.randn(batch, 1, 4, head, generator=gen), dim=-1).to(torch.bfloat16)
    v = torch.randn(batch, 1, 8, head, generator=gen).to(torch.bfloat16)
    state = torch.randn(batch, 8, head, head, generator=gen)
    A_log, dt_bias = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    a, b = torch.randn(batch, 1, 8, generator=gen).to(torch.bfloat16), torch.randn(batch, 1, 8, generator=gen).to(torch.bfloat16)
    return [q, k, v, state, A_log, a, dt_bias, b]


@pytest.mark.parametrize("scale", [0.25, 0.0])
def test_gdn_decode_matches_the_recurrence(scale):
    head = 16
    q, k, v, state, A_log, a, dt_bias, b = decode_inputs(3, head, seed=1)
    output, new_state = reference_of(raw(GDN_DECODE))["run"](q, k, v, state, A_log, a, dt_bias, b, scale)
    assert output.shape == (3, 1, 8, head) and output.dtype == torch.bfloat16 and new_state.shape == (3, 8, head, head)
    used = scale or 1 / math.sqrt(head)
    for bi in range(3):
        for h in range(8):
            o, s_new = gdn_step_loop(q[bi, 0, h // 2], k[bi, 0, h // 2], v[bi, 0, h], state[bi, h], A_log[h], a[bi, 0, h], dt_bias[h], b[bi, 0, h], used)
            assert torch.allclose(new_state[bi, h].double(), s_new, atol=1e-5, rtol=1e-5)
            assert torch.allclose(output[bi, 0, h].double(), o, atol=1e-2, rtol=1e-2)
            assert torch.allclose(output[bi, 0, h].double(), o.to(torch.bfloat16).double(), atol=1e-3, rtol=8e-3)  # one bf16 rounding
    # no state means a zero state
    out0, _ = reference_of(raw(GDN_DECODE))["run"](q, k, v, None, A_log, a, dt_bias, b, scale)
    out_zero, _ = reference_of(raw(GDN_DECODE))["run"](q, k, v, torch.zeros_like(state), A_log, a, dt_bias, b, scale)
    assert torch.equal(out0, out_zero)


def test_gdn_prefill_matches_the_recurrence_token_by_token():
    head, cu = 16, [0, 5, 5, 12, 13]  # an empty sequence and a one-token one too
    total, seqs = cu[-1], len(cu) - 1
    gen = torch.Generator().manual_seed(2)
    q = torch.nn.functional.normalize(torch.randn(total, 4, head, generator=gen), dim=-1).to(torch.bfloat16)
    k = torch.nn.functional.normalize(torch.randn(total, 4, head, generator=gen), dim=-1).to(torch.bfloat16)
    v = torch.randn(total, 8, head, generator=gen).to(torch.bfloat16)
    state = torch.randn(seqs, 8, head, head, generator=gen)
    A_log, dt_bias = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    a, b = torch.randn(total, 8, generator=gen).to(torch.bfloat16), torch.randn(total, 8, generator=gen).to(torch.bfloat16)
    before = state.clone()
    output, new_state = reference_of(raw(GDN_PREFILL))["run"](q, k, v, state, A_log, a, dt_bias, b, torch.tensor(cu), 0.5)
    assert torch.equal(state, before)  # inputs untouched
    for s in range(seqs):
        for h in range(8):
            S = state[s, h].double()
            for t in range(cu[s], cu[s + 1]):
                o, S = gdn_step_loop(q[t, h // 2], k[t, h // 2], v[t, h], S, A_log[h], a[t, h], dt_bias[h], b[t, h], 0.5)
                assert torch.allclose(output[t, h].double(), o, atol=1e-2, rtol=1e-2)
            assert torch.allclose(new_state[s, h].double(), S, atol=1e-4, rtol=1e-4)
    # one token per sequence is a decode step
    q1, k1, v1, st1, A1, a1, d1, b1 = decode_inputs(4, head, seed=3)
    dec_out, dec_state = reference_of(raw(GDN_DECODE))["run"](q1, k1, v1, st1, A1, a1, d1, b1, 0.3)
    pre_out, pre_state = reference_of(raw(GDN_PREFILL))["run"](q1[:, 0], k1[:, 0], v1[:, 0], st1, A1, a1[:, 0], d1, b1[:, 0], torch.arange(5), 0.3)
    assert torch.allclose(pre_out.float(), dec_out[:, 0].float(), atol=1e-2) and torch.allclose(pre_state, dec_state, atol=1e-5)


def dsa_loop(q_nope, q_pe, ckv_cache, kpe_cache, indices, sm_scale):
    T, H, D = q_nope.shape
    ckv, kpe = ckv_cache.reshape(-1, D).double(), kpe_cache.reshape(-1, q_pe.shape[-1]).double()
    out = torch.zeros(T, H, D, dtype=torch.float64)
    lse = torch.full((T, H), float("-inf"), dtype=torch.float64)
    for t in range(T):
        rows = [r for r in indices[t].tolist() if r != -1]
        for h in range(H):
            if not rows:
                continue
            logits = [sm_scale * (float(q_nope[t, h].double() @ ckv[r]) + float(q_pe[t, h].double() @ kpe[r])) for r in rows]
            top = max(logits)
            total = sum(math.exp(x - top) for x in logits)
            lse[t, h] = (top + math.log(total)) / math.log(2)
            for x, r in zip(logits, rows):
                out[t, h] += math.exp(x - top) / total * ckv[r]
    return out, lse


def test_dsa_attention_matches_a_loop_with_padding_and_no_valid_index():
    gen = torch.Generator().manual_seed(4)
    T, H, D, P, pages = 4, 3, 32, 16, 5
    q_nope = torch.randn(T, H, D, generator=gen).to(torch.bfloat16)
    q_pe = torch.randn(T, H, P, generator=gen).to(torch.bfloat16)
    ckv = torch.randn(pages, 64, D, generator=gen).to(torch.bfloat16)
    kpe = torch.randn(pages, 64, P, generator=gen).to(torch.bfloat16)
    topk = 24
    indices = torch.full((T, topk), -1, dtype=torch.int32)
    indices[0] = torch.randperm(pages * 64, generator=gen)[:topk].to(torch.int32)  # full
    indices[1, :7] = torch.randperm(pages * 64, generator=gen)[:7].to(torch.int32)  # padded tail
    indices[2, ::3] = torch.randperm(pages * 64, generator=gen)[:8].to(torch.int32)  # padding between entries too
    # token 3: no valid index at all
    output, lse = reference_of(raw(DSA))["run"](q_nope, q_pe, ckv, kpe, indices, 0.2)
    want_out, want_lse = dsa_loop(q_nope, q_pe, ckv, kpe, indices, 0.2)
    assert output.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert torch.allclose(output.double(), want_out, atol=1e-2, rtol=1e-2)
    assert torch.allclose(lse[:3].double(), want_lse[:3], atol=1e-4, rtol=1e-5)
    assert (output[3] == 0).all() and (lse[3] == float("-inf")).all()


def _unpack_pages(cache: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys [P, page_size, D] as floats and scales [P, page_size], read byte by byte from each page."""
    pages = cache.shape[0]
    raw_bytes = cache.contiguous().view(torch.uint8).reshape(pages, -1)
    page_size = raw_bytes.shape[1] // (head_dim + 4)
    keys = raw_bytes[:, : page_size * head_dim].contiguous().view(torch.float8_e4m3fn).float().reshape(pages, page_size, head_dim)
    scale_bytes = raw_bytes[:, page_size * head_dim :].contiguous().numpy()
    scales = torch.from_numpy(scale_bytes.view("<f4").copy()).reshape(pages, page_size)
    return keys, scales


def _pack_pages(keys_fp8: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[P, page_size, D] fp8 keys and [P, page_size] fp32 scales as the packed int8 [P, page_size, 1, D + 4] cache."""
    pages, page_size, head_dim = keys_fp8.shape
    body = keys_fp8.reshape(pages, -1).view(torch.uint8)
    tail = torch.from_numpy(scales.numpy().astype("<f4").view("u1").reshape(pages, -1).copy())
    return torch.cat([body, tail], dim=1).view(torch.int8).reshape(pages, page_size, 1, head_dim + 4)


def test_topk_indexer_chooses_the_best_scores():
    gen = torch.Generator().manual_seed(5)
    heads, dim, pages = 8, 32, 170
    keys = torch.randn(pages, 64, dim, generator=gen).clamp(-2, 2).to(torch.float8_e4m3fn)
    scales = torch.rand(pages, 64, generator=gen) * 0.09 + 0.01
    cache = _pack_pages(keys, scales)
    k2, s2 = _unpack_pages(cache, dim)
    assert torch.equal(k2, keys.float()) and torch.equal(s2, scales)  # the packing helpers agree with each other
    lengths = [2500, 700, 1, 0]  # more than topk, fewer, one token, none
    batch = len(lengths)
    q = torch.randn(batch, heads, dim, generator=gen).clamp(-2, 2).to(torch.float8_e4m3fn)
    weights = torch.randn(batch, heads, generator=gen)
    table = torch.randperm(pages, generator=gen)[: batch * 40].reshape(batch, 40).to(torch.int32)
    chosen = reference_of(raw(INDEXER))["run"](q, cache, weights, torch.tensor(lengths, dtype=torch.int32), table)
    assert chosen.shape == (batch, 2048) and chosen.dtype == torch.int32
    for bi, n in enumerate(lengths):
        scores = {}
        for t in range(n):
            page, slot = int(table[bi, t // 64]), t % 64
            key = keys[page, slot].double() * float(scales[page, slot])
            heads_dot = q[bi].double() @ key
            scores[page * 64 + slot] = float((weights[bi].double() * heads_dot.clamp(min=0)).sum())
        count = min(2048, n)
        row = chosen[bi].tolist()
        assert all(x == -1 for x in row[count:])
        picked = row[:count]
        assert len(set(picked)) == count and set(picked) <= set(scores)  # real tokens of this sequence, once each
        best = sorted(scores.values(), reverse=True)[:count]
        got = [scores[x] for x in picked]
        # the same scores as the true top-k (a near-tie at the boundary may swap equal-scoring tokens)
        assert sorted(got, reverse=True) == pytest.approx(best, rel=1e-4, abs=1e-5)
        assert all(x >= y - 1e-4 * max(1.0, abs(x)) for x, y in zip(got, got[1:]))  # best first


def route_loop(logits: torch.Tensor, bias: torch.Tensor, factor: float) -> list[dict[int, float]]:
    """DeepSeek-V3 grouped top-k routing, one token at a time: {expert: combine weight}."""
    routes = []
    for row in logits.tolist():
        s = [1 / (1 + math.exp(-x)) for x in row]
        selection = [si + float(bi) for si, bi in zip(s, bias.float().tolist())]
        group_scores = [sum(sorted(selection[g * 32 : (g + 1) * 32], reverse=True)[:2]) for g in range(8)]
        groups = sorted(range(8), key=lambda g: -group_scores[g])[:4]
        candidates = [e for e in range(256) if e // 32 in groups]
        experts = sorted(candidates, key=lambda e: -selection[e])[:8]
        total = sum(s[e] for e in experts)
        routes.append({e: s[e] / total * factor for e in experts})
    return routes


def test_moe_routing_matches_deepseek_v3_grouped_topk():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(40, 256, generator=gen)
    bias = (torch.randn(256, generator=gen) * 0.1).to(torch.bfloat16)
    experts, weights = reference_of(raw(MOE))["route"](logits, bias, 2.5)
    for t, want in enumerate(route_loop(logits, bias, 2.5)):
        got = dict(zip(experts[t].tolist(), weights[t].tolist()))
        assert set(got) == set(want)
        assert all(got[e] == pytest.approx(want[e], rel=1e-5) for e in want)
    # the bias steers the choice and never the weights: a huge bias on expert 3 always picks it
    bias2 = bias.clone()
    bias2[3] = 100
    experts2, weights2 = reference_of(raw(MOE))["route"](logits, bias2, 1.0)
    assert (experts2 == 3).any(dim=1).all() and torch.allclose(weights2.sum(dim=1), torch.ones(40))


def test_moe_experts_match_a_loop_with_block_dequantization():
    blob = raw_workload(MOE)["inputs"]["routing_bias"]  # the shipped bias blob, through make_inputs
    definition, workload, rules = small(MOE, SMALL[MOE], {"seq_len": 6}, inputs={"local_expert_offset": {"type": "scalar", "value": 64}, "routing_bias": blob})
    values = make_inputs(definition, workload, seed=9, device="cpu", dataset_root=DATASET, rules=rules)
    names = list(definition.inputs)
    inputs = dict(zip(names, values))
    # make sure tokens reach this rank: lift the logits of a few local experts for some tokens
    inputs["routing_logits"][:4, 64 + torch.tensor([0, 5, 31])] += 6.0
    inputs["routed_scaling_factor"] = 2.5
    got = reference_of(definition)["run"](*(inputs[n] for n in names)).double()
    x, xs = inputs["hidden_states"].double(), inputs["hidden_states_scale"].double()
    w1, s1, w2, s2 = (inputs[n].double() for n in ("gemm1_weights", "gemm1_weights_scale", "gemm2_weights", "gemm2_weights_scale"))
    hidden, inter = x.shape[1], w2.shape[2]
    want = torch.zeros(6, hidden, dtype=torch.float64)
    hits = 0
    for t, route in enumerate(route_loop(inputs["routing_logits"], inputs["routing_bias"], 2.5)):
        xt = torch.tensor([float(x[t, c]) * float(xs[c // 128, t]) for c in range(hidden)], dtype=torch.float64)
        for expert, weight in route.items():
            e = expert - 64
            if not 0 <= e < 32:
                continue
            hits += 1
            rows1, cols1 = torch.arange(2 * inter), torch.arange(hidden)
            W1 = w1[e] * s1[e][rows1[:, None] // 128, cols1[None, :] // 128]
            h = W1 @ xt
            u, g = h[:inter], h[inter:]
            act = u * (g / (1 + torch.exp(-g)))
            rows2, cols2 = torch.arange(hidden), torch.arange(inter)
            W2 = w2[e] * s2[e][rows2[:, None] // 128, cols2[None, :] // 128]
            want[t] += weight * (W2 @ act)
    assert hits >= 3
    close = (got - want).abs() <= 1e-3 * want.abs().max() + 8e-3 * want.abs()
    assert bool(close.all()), float((got - want).abs().max())
    for t in range(6):  # a token with no local expert gives zeros
        if not any(0 <= e - 64 < 32 for e in route_loop(inputs["routing_logits"][t : t + 1], inputs["routing_bias"], 2.5)[0]):
            assert (got[t] == 0).all()


# ---- the example solution and the task notes


def test_gdn_decode_example_matches_the_reference_under_the_triton_interpreter(tmp_path):
    """The Triton example on the CPU through Triton's interpreter (skipped where triton is not installed)."""
    try:
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            pytest.skip("triton is not installed (CPU torch ships without it)")
    except ValueError:
        pytest.skip("triton is not importable")
    solution = json.loads((DATASET / "solutions/kda-examples/gdn" / GDN_DECODE / f"{GDN_DECODE}_triton_rows.json").read_text())
    (tmp_path / "main.py").write_text(solution["sources"][0]["content"])
    (tmp_path / "reference.py").write_text(raw(GDN_DECODE)["reference"])
    script = tmp_path / "check.py"
    script.write_text(
        "import math, sys, torch\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import main, reference\n"
        "gen = torch.Generator().manual_seed(0)\n"
        "for batch, scale in ((2, 1 / math.sqrt(128)), (3, 0.0)):\n"
        "    q = torch.nn.functional.normalize(torch.randn(batch, 1, 4, 128, generator=gen), dim=-1).to(torch.bfloat16)\n"
        "    k = torch.nn.functional.normalize(torch.randn(batch, 1, 4, 128, generator=gen), dim=-1).to(torch.bfloat16)\n"
        "    v = torch.randn(batch, 1, 8, 128, generator=gen).to(torch.bfloat16)\n"
        "    state = torch.randn(batch, 8, 128, 128, generator=gen)\n"
        "    A_log, dt_bias = torch.randn(8, generator=gen), torch.randn(8, generator=gen)\n"
        "    a = torch.randn(batch, 1, 8, generator=gen).to(torch.bfloat16)\n"
        "    b = torch.randn(batch, 1, 8, generator=gen).to(torch.bfloat16)\n"
        "    out = torch.full((batch, 1, 8, 128), float('nan'), dtype=torch.bfloat16)\n"
        "    new_state = torch.full((batch, 8, 128, 128), float('nan'))\n"
        "    main.run(q, k, v, state, A_log, a, dt_bias, b, scale, out, new_state)\n"
        "    want_out, want_state = reference.run(q, k, v, state, A_log, a, dt_bias, b, scale)\n"
        "    assert torch.allclose(new_state, want_state, atol=1e-4, rtol=1e-4), (new_state - want_state).abs().max()\n"
        "    assert torch.allclose(out.float(), want_out.float(), atol=1e-2, rtol=1e-2), (out.float() - want_out.float()).abs().max()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]


def _wiki_ids() -> set[str]:
    ids = set()
    for page in WIKI.rglob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines()[:5]:
            if line.startswith("id:"):
                ids.add(line.split(":", 1)[1].strip())
    return ids


@pytest.mark.parametrize("name", sorted(Dataset.load(DATASET).names()))
def test_every_shipped_kernel_has_a_task_note_naming_real_wiki_pages(name):
    note = (TASKS / f"{name}.md").read_text(encoding="utf-8")
    assert note.startswith(f"# {name}")
    for heading in ("## What dominates the cost", "## Wiki pages", "## Measured"):
        assert heading in note, heading
    cited = {line.split("`")[1] for line in note.splitlines() if line.startswith("- `")}
    wiki = _wiki_ids()
    assert cited and cited <= wiki, cited - wiki


def test_task_notes_are_found_by_definition_name_only():
    from kda_mcp.resources import tasks

    assert tasks.note(GDN_DECODE).startswith(f"# {GDN_DECODE}")
    assert tasks.note("vector_add_fp32_nonexistent") is None
    for sneaky in ("../prompts/phase1", "/etc/passwd", "", ".hidden"):
        assert tasks.note(sneaky) is None
