"""The runner's typed records: a job (one model), the options every job shares, one model's
result, and the fields of the binary's JSON report (schema `REPORT_SCHEMA`) that it reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

# The `schema_version` of `mars::eval::report::Report` this runner reads; a report of another
# version is a failure of that model, not a misread table.
REPORT_SCHEMA = 2

Backend = Literal["embedded", "ollama", "scripted"]


class Proportion(TypedDict):
    """A pass rate with its 95% Wilson interval, as the binary computed it."""

    successes: int
    trials: int
    rate: float
    low: float
    high: float


# `pass` is a Python keyword, hence the functional form. Only the fields read here are listed;
# the report carries more, and the merged JSON keeps the report whole.
StrategySummary = TypedDict("StrategySummary", {
    "strategy": str,
    "pass": Proportion,
    "verdicts": dict[str, int],
    "mean_total_tokens": float | None,
    "passes_per_1k_tokens": float | None,
    # Against baseline in the same run, beyond the 95% intervals; None for baseline itself and
    # when baseline was not run.
    "vs_baseline": Literal["better", "worse", "overlapping"] | None,
})


class BackendInfo(TypedDict):
    kind: str
    model: str
    reason: str


class Report(TypedDict):
    """The binary's `--json` report (`mars::eval::report::Report`)."""

    schema_version: int
    mars_version: str
    backend: BackendInfo
    config: dict[str, Any]
    tasks: list[str]
    isolation: str
    strategies: list[StrategySummary]
    cells: list[dict[str, Any]]
    recommendations: list[str]
    samples: list[dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """One model to benchmark, as named in `--models`."""

    label: str
    backend: Backend
    # The Ollama model, or the embedded engine's preset; None: the binary's default model.
    model: str | None
    # A GGUF file: its name in the volume's gguf/ folder on Modal, a path here with --local.
    gguf: str | None
    # The label made safe for file names.
    slug: str


@dataclass(frozen=True)
class RunOptions:
    """What every job passes to the binary. A task file travels as its text, since a container
    cannot see this machine's files."""

    args: tuple[str, ...]
    tasks: str
    tasks_jsonl: str | None = None


@dataclass(frozen=True)
class Runner:
    """Where the whole run happened: `modal` (with its GPU) or `local`."""

    kind: Literal["modal", "local"]
    gpu: str | None
    wall_s: float


@dataclass(frozen=True)
class ModelResult:
    """One model's outcome: the binary's report, Markdown and plot, or a structured failure
    (what failed and the tail of its output)."""

    job: Job
    ok: bool
    error: str | None = None
    report: Report | None = None
    markdown: str | None = None
    svg: str | None = None
    wall_s: float | None = None
    setup_s: float | None = None
    gpu: str | None = None
    ollama_version: str | None = None
    ollama_ps: str | None = None
    log_tail: str = ""

    @property
    def label(self) -> str:
        return self.job.label

    def with_facts(self, **facts: Any) -> ModelResult:
        """This result with container facts (`gpu`, `setup_s`, ...) added."""
        return dataclasses.replace(self, **facts)

    def to_json(self) -> dict[str, Any]:
        """The job's fields and the result's, flat (the shape of the fixtures and the merged
        JSON's model entries)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["job"]
        return {**dataclasses.asdict(self.job), **fields}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelResult:
        job_keys = {f.name for f in dataclasses.fields(Job)}
        job = Job(**{k: data[k] for k in job_keys})
        return cls(job=job, **{k: v for k, v in data.items() if k not in job_keys})
