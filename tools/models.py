"""Result models of the browsing tools (dataset and capabilities).

Fields left as None are dropped from what the agent sees, so optional detail costs nothing when absent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tolerance(Result):
    atol: float = Field(gt=0)
    rtol: float = Field(ge=0)
    required_matched_ratio: float | None = Field(default=None, gt=0, le=1)
    source: str = "definition"


class AxisInfo(Result):
    name: str
    kind: str
    value: int | None = None
    description: str | None = None


class TensorInfo(Result):
    name: str
    shape: list[str] | None = Field(default=None, description="Axis names; absent for a scalar.")
    dtype: str
    description: str | None = None


class WorkloadInfo(Result):
    uuid: str
    axes: dict[str, int]
    inputs: dict[str, str] | None = Field(default=None, description="Inputs that are not random: scalars and safetensors blobs.")
    dev: bool | None = Field(default=None, description="In the definition's dev set.")


class DefinitionSummary(Result):
    name: str
    op_type: str
    tags: list[str]
    var_axes: list[str]
    workloads: int
    summary: str | None = None


class DefinitionPage(Result):
    dataset: str
    total: int
    offset: int
    next_offset: int | None = Field(default=None, description="Offset of the next page; absent at the end.")
    definitions: list[DefinitionSummary]
    hint: str | None = None
    problems: list[str] | None = Field(default=None, description="Dataset files that were skipped, and why.")


class DefinitionDetail(Result):
    name: str
    op_type: str
    description: str | None = None
    tags: list[str]
    file: str
    axes: list[AxisInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    constraints: list[str] | None = None
    tolerance: Tolerance
    workload_count: int
    dev_workloads: list[WorkloadInfo]
    baseline_solution: str | None = None
    solutions: list[str] | None = None
    policy: dict[str, Any] | None = Field(default=None, description="What solutions may not use (calls, kernels, libraries); run_benchmark flags violations.")
    reference: str | None = None


class WorkloadPage(Result):
    definition: str
    total: int
    offset: int
    next_offset: int | None = Field(default=None, description="Offset of the next page; absent at the end.")
    workloads: list[WorkloadInfo]
