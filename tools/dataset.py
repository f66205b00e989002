"""Read a FlashInfer-Trace dataset folder: definitions, workloads and solutions.

A dataset with a few broken files stays usable: each broken file is skipped and reported as a
problem that names it, and asking for something that lives in a broken file says which file
and why. Only a missing or empty root is fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashinfer_bench.data import AxisConst, Definition, Solution, Trace, Workload
from pydantic import ValidationError

from kda_mcp.tools.evaluation.input_rules import embedded_extras
from kda_mcp.tools.errors import DatasetError, InvalidArgumentError, NotFoundError, not_found
from kda_mcp.tools.models import (
    AxisInfo,
    DefinitionDetail,
    DefinitionPage,
    DefinitionSummary,
    TensorInfo,
    Tolerance,
    WorkloadInfo,
    WorkloadPage,
)

# flashinfer-bench's BenchmarkConfig defaults: what its own evaluator uses when a definition says nothing.
DEFAULT_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2, source="default (flashinfer-bench BenchmarkConfig)")
DEV_SET_SIZE = 4
MAX_PAGE = 200


def _short_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc}).") from exc


def _workload_size(workload: Workload) -> float:
    """A scalar that orders workloads from small to large: the log of the product of its axes."""
    return sum(math.log(max(v, 1)) for v in workload.axes.values())


def spread_sample(workloads: list[Workload], k: int) -> list[Workload]:
    """`k` workloads spanning the size range: the smallest, the largest and evenly spaced ones between."""
    ordered = sorted(workloads, key=lambda w: (_workload_size(w), w.uuid))
    if len(ordered) <= k:
        return ordered
    picks = sorted({round(i * (len(ordered) - 1) / (k - 1)) for i in range(k)})
    return [ordered[i] for i in picks]


def _describe_input(spec: Any) -> str:
    if spec.type == "scalar":
        return f"scalar={spec.value}"
    if spec.type == "safetensors":
        return f"safetensors:{spec.path}#{spec.tensor_key}"
    return spec.type


def _first_sentence(text: str | None, limit: int = 160) -> str | None:
    if not text:
        return None
    sentence = text.strip().split("\n")[0].split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise InvalidArgumentError(f"offset must be >= 0, got {offset}.")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_PAGE}, got {limit}.")


@dataclass
class _Entry:
    definition: Definition
    path: Path
    tolerance: Tolerance
    extras: dict[str, Any]
    workloads: list[Workload] = field(default_factory=list)


class Dataset:
    """An in-memory view of one FlashInfer-Trace folder, loaded once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []
        self._entries: dict[str, _Entry] = {}
        self._broken_definitions: dict[str, str] = {}  # file stem -> why it did not load
        self._solutions: dict[str, list[tuple[Solution, Path]]] | None = None

    # ---- loading

    @classmethod
    def load(cls, root: Path) -> Dataset:
        if not root.exists():
            raise DatasetError(
                f"Dataset folder {root} does not exist.",
                hint="Point FIB_DATASET_PATH or --dataset at a FlashInfer-Trace folder, or unset it to use the embedded sample.",
            )
        if not root.is_dir():
            raise DatasetError(f"Dataset path {root} is a file, not a folder.")
        if not (root / "definitions").is_dir():
            raise DatasetError(
                f"{root} has no definitions/ folder, so it is not a FlashInfer-Trace dataset.",
                hint="Expected definitions/<op_type>/<name>.json and workloads/<op_type>/<name>.jsonl.",
            )
        dataset = cls(root)
        dataset._load_definitions()
        dataset._load_workloads()
        return dataset

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def _load_definitions(self) -> None:
        for path in sorted((self.root / "definitions").rglob("*.json")):
            try:
                data = _read_json(path)
                if not isinstance(data, dict):
                    raise DatasetError(f"{path}: expected a JSON object, found {type(data).__name__}.")
                definition = Definition.model_validate(data)
                tolerance = self._tolerance_from(data.get("tolerance"), path)
            except ValidationError as exc:
                self._record_broken(path, f"not a valid Definition: {_short_validation_error(exc)}")
                continue
            except DatasetError as exc:
                self._record_broken(path, exc.message.removeprefix(f"{path}: "))
                continue
            if definition.name in self._entries:
                first = self._rel(self._entries[definition.name].path)
                self.problems.append(f"{self._rel(path)}: duplicate definition name {definition.name!r} (first in {first}); skipped.")
                continue
            extras = {k: v for k, v in data.items() if k not in Definition.model_fields}
            if "tolerance" not in data:
                # An official definition carries none of kda-mcp's keys; where kda-mcp embeds the same
                # interface under the same name, it lends its own (the MoE's 90%-matched tolerance,
                # the contest kernels' input rules), so the kernel is judged as the contest judges it.
                lent = embedded_extras(definition)
                extras = {**{k: v for k, v in lent.items() if k != "tolerance"}, **extras}
                if "tolerance" in lent:
                    tolerance = Tolerance.model_validate({**lent["tolerance"], "source": "kda-mcp's embedded definition of the same name"})
            self._entries[definition.name] = _Entry(definition, path, tolerance, extras)
        if not self._entries and not self._broken_definitions:
            raise DatasetError(f"{self.root / 'definitions'} holds no definition files (*.json).")

    def _record_broken(self, path: Path, why: str) -> None:
        self._broken_definitions[path.stem] = f"{self._rel(path)}: {why}"
        self.problems.append(f"{self._rel(path)}: {why}")

    def _tolerance_from(self, raw: Any, path: Path) -> Tolerance:
        if raw is None:
            return DEFAULT_TOLERANCE
        try:
            return Tolerance.model_validate({**raw, "source": "definition"})
        except (ValidationError, TypeError) as exc:
            detail = _short_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise DatasetError(f"{path}: bad 'tolerance' object: {detail}.") from exc

    def _load_workloads(self) -> None:
        workloads_root = self.root / "workloads"
        if not workloads_root.is_dir():
            return
        for path in sorted(workloads_root.rglob("*.jsonl")):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(f"{self._rel(path)}: cannot be read ({exc}).")
                continue
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    trace = Trace.model_validate_json(line)
                except ValidationError as exc:
                    self.problems.append(f"{self._rel(path)}:{number}: not a valid workload trace: {_short_validation_error(exc)}")
                    continue
                entry = self._entries.get(trace.definition)
                if entry is None:
                    if trace.definition not in self._broken_definitions:
                        self.problems.append(f"{self._rel(path)}:{number}: workload for unknown definition {trace.definition!r}.")
                    continue
                missing = set(entry.definition.var_axes) - set(trace.workload.axes)
                if missing:
                    self.problems.append(f"{self._rel(path)}:{number}: workload {trace.workload.uuid} lacks axes {sorted(missing)}.")
                    continue
                entry.workloads.append(trace.workload)

    def _load_solutions(self) -> dict[str, list[tuple[Solution, Path]]]:
        if self._solutions is not None:
            return self._solutions
        found: dict[str, list[tuple[Solution, Path]]] = {}
        solutions_root = self.root / "solutions"
        for path in sorted(solutions_root.rglob("*.json")) if solutions_root.is_dir() else []:
            try:
                solution = Solution.model_validate(_read_json(path))
            except ValidationError as exc:
                self.problems.append(f"{self._rel(path)}: not a valid Solution: {_short_validation_error(exc)}")
                continue
            except DatasetError as exc:
                self.problems.append(exc.message)
                continue
            found.setdefault(solution.definition, []).append((solution, path))
        self._solutions = found
        return found

    # ---- lookups

    def names(self) -> list[str]:
        return sorted(self._entries)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        if name in self._broken_definitions:
            raise DatasetError(f"Definition {name!r} could not be loaded: {self._broken_definitions[name]}")
        raise not_found("definition", name, self._entries, list_tool="list_definitions")

    def definition(self, name: str) -> Definition:
        return self._entry(name).definition

    def definition_file(self, name: str) -> Path:
        return self._entry(name).path

    def tolerance(self, name: str) -> Tolerance:
        return self._entry(name).tolerance

    def extras(self, name: str) -> dict[str, Any]:
        """Keys of the definition file that flashinfer-bench ignores (kda-mcp policy such as tolerance)."""
        return dict(self._entry(name).extras)

    def workloads(self, name: str) -> list[Workload]:
        return list(self._entry(name).workloads)

    def dev_set(self, name: str, k: int = DEV_SET_SIZE) -> list[Workload]:
        return spread_sample(self._entry(name).workloads, k)

    def select_workloads(self, name: str, selection: str | list[str]) -> list[Workload]:
        """'dev' (the default set), 'all', or a list of workload uuids (unique prefixes accepted)."""
        workloads = self._entry(name).workloads
        if isinstance(selection, list) and len(selection) == 1 and selection[0] in ("dev", "all"):
            selection = selection[0]  # ["all"] means what it says
        if selection == "dev":
            return self.dev_set(name)
        if selection == "all":
            return list(workloads)
        if isinstance(selection, str):
            selection = [selection]
        chosen = []
        for wanted in selection:
            matches = [w for w in workloads if w.uuid == wanted] or [w for w in workloads if w.uuid.startswith(wanted)]
            if len(matches) != 1:
                problem = "matches several workloads" if matches else "is not a workload of"
                raise NotFoundError(
                    f"Workload {wanted!r} {problem} {name!r}.",
                    hint=f"Call list_workloads(definition={name!r}) for the uuids, or pass 'dev' or 'all'.",
                )
            chosen.append(matches[0])
        return chosen

    def solutions(self, name: str) -> list[Solution]:
        self._entry(name)
        return [s for s, _ in self._load_solutions().get(name, [])]

    def baseline(self, name: str) -> Solution | None:
        """The dataset's baseline solution for `name`: one stored under solutions/baseline/."""
        self._entry(name)
        for solution, path in self._load_solutions().get(name, []):
            if self._rel(path).split("/")[:2] == ["solutions", "baseline"]:
                return solution
        return None

    # ---- views for tools

    def list_definitions(
        self,
        *,
        op_type: str | None = None,
        name_contains: str | None = None,
        tag: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> DefinitionPage:
        check_page(offset, limit)
        rows = []
        for name in self.names():
            entry = self._entries[name]
            d = entry.definition
            if op_type and d.op_type != op_type:
                continue
            if name_contains and name_contains.lower() not in name.lower():
                continue
            if tag and tag not in d.tags:
                continue
            rows.append(
                DefinitionSummary(
                    name=name,
                    op_type=d.op_type,
                    tags=list(d.tags),
                    var_axes=list(d.var_axes),
                    workloads=len(entry.workloads),
                    summary=_first_sentence(d.description),
                )
            )
        hint = None
        if not rows:
            op_types = sorted({e.definition.op_type for e in self._entries.values()})
            tags = sorted({t for e in self._entries.values() for t in e.definition.tags})
            hint = f"No definition matches. op types: {', '.join(op_types)}; tags: {', '.join(tags) or 'none'}."
        page = rows[offset : offset + limit]
        end = offset + len(page)
        return DefinitionPage(
            dataset=str(self.root),
            total=len(rows),
            offset=offset,
            next_offset=end if end < len(rows) else None,
            definitions=page,
            hint=hint,
            problems=self.problems[:20] or None,
        )

    def describe(self, name: str, *, include_reference: bool = True) -> DefinitionDetail:
        entry = self._entry(name)
        d = entry.definition
        axes = [
            AxisInfo(
                name=axis_name,
                kind=axis.type,
                value=axis.value if isinstance(axis, AxisConst) else None,
                description=axis.description,
            )
            for axis_name, axis in d.axes.items()
        ]
        baseline = self.baseline(name)
        return DefinitionDetail(
            name=d.name,
            op_type=d.op_type,
            description=d.description,
            tags=list(d.tags),
            file=self._rel(entry.path),
            axes=axes,
            inputs=[TensorInfo(name=n, shape=s.shape, dtype=s.dtype.value, description=s.description) for n, s in d.inputs.items()],
            outputs=[TensorInfo(name=n, shape=s.shape, dtype=s.dtype.value, description=s.description) for n, s in d.outputs.items()],
            constraints=list(d.constraints) or None,
            tolerance=entry.tolerance,
            workload_count=len(entry.workloads),
            dev_workloads=[self.workload_info(w) for w in self.dev_set(name)],
            baseline_solution=baseline.name if baseline else None,
            solutions=[s.name for s in self.solutions(name)] or None,
            policy=entry.extras.get("policy") or None,
            reference=d.reference if include_reference else None,
        )

    @staticmethod
    def workload_info(workload: Workload, *, dev: bool | None = None) -> WorkloadInfo:
        return WorkloadInfo(
            uuid=workload.uuid,
            axes=dict(workload.axes),
            inputs={n: _describe_input(s) for n, s in workload.inputs.items() if s.type != "random"} or None,
            dev=dev,
        )

    def list_workloads(self, name: str, *, offset: int = 0, limit: int = 50) -> WorkloadPage:
        check_page(offset, limit)
        entry = self._entry(name)
        dev_ids = {w.uuid for w in self.dev_set(name)}
        ordered = sorted(entry.workloads, key=lambda w: (_workload_size(w), w.uuid))
        page = ordered[offset : offset + limit]
        end = offset + len(page)
        return WorkloadPage(
            definition=name,
            total=len(ordered),
            offset=offset,
            next_offset=end if end < len(ordered) else None,
            workloads=[self.workload_info(w, dev=w.uuid in dev_ids) for w in page],
        )
