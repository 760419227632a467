"""Statistics, target evaluation and the markdown report of `make bench` (standard library only).

Hand-written because no library fits: the targets are this project's (ARCHITECTURE.md, "What the hot path
costs"), and the verdict has to say by how much a target is missed, not only that it is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Direction = Literal["at_least", "at_most"]


def median(values: Iterable[float]) -> float:
    """The median of ``values``; NaN when there are none (a missing measurement, never a pass)."""
    data = [value for value in values if not math.isnan(value)]
    return statistics.median(data) if data else math.nan


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of already sorted values (``fraction`` 0.99 -> p99)."""
    if not sorted_values:
        return math.nan
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction}")
    position = fraction * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1 - weight) + sorted_values[upper] * weight


def latency_summary(latencies_ns: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of per-request latencies given in nanoseconds."""
    ordered = sorted(latencies_ns)
    return {
        "p50_ms": percentile(ordered, 0.50) / 1e6,
        "p90_ms": percentile(ordered, 0.90) / 1e6,
        "p99_ms": percentile(ordered, 0.99) / 1e6,
        "max_ms": (ordered[-1] / 1e6) if ordered else math.nan,
    }


def format_value(value: float, unit: str) -> str:
    """A measured value in its unit, with a precision that suits the unit."""
    if math.isnan(value):
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "ms":
        return (
            f"{value:.0f} ms"
            if abs(value) >= 100
            else f"{value:.1f} ms"
            if abs(value) >= 10
            else f"{value:.2f} ms"
        )
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "min":
        return f"{value:.1f} min"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    return f"{value:g} {unit}".strip()


@dataclass
class Target:
    """One target of the issue: ``measured`` must be ``at_least`` / ``at_most`` ``limit``."""

    name: str
    measured: float
    limit: float
    direction: Direction
    unit: str
    detail: str = ""  # how the number was obtained (the raw values behind a ratio or a difference)
    skipped: str | None = None  # a reason: the target could not be measured (never a pass)
    hot_path: bool = False  # a miss here gets the hardened server profiled
    limit_text: str = ""  # the target as a reader knows it ("bare + 18 us"), when not just the limit

    @property
    def passed(self) -> bool:
        if self.skipped is not None or math.isnan(self.measured):
            return False
        if self.direction == "at_least":
            return self.measured >= self.limit
        return self.measured <= self.limit

    @property
    def shortfall(self) -> float:
        """How far the measurement is on the wrong side of the limit (0 when it passes)."""
        if self.skipped is not None or math.isnan(self.measured):
            return math.nan
        gap = self.limit - self.measured if self.direction == "at_least" else self.measured - self.limit
        return max(gap, 0.0)

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return f"skipped: {self.skipped}"
        if math.isnan(self.measured):
            return "not measured"
        if self.passed:
            return "pass"
        relative = self.shortfall / abs(self.limit) * 100 if self.limit else math.nan
        share = "" if math.isnan(relative) else f" ({relative:.0f}% of the target)"
        return f"short by {format_value(self.shortfall, self.unit)}{share}"

    def target_text(self) -> str:
        symbol = ">=" if self.direction == "at_least" else "<="
        return f"{symbol} {self.limit_text or format_value(self.limit, self.unit)}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured"] = None if math.isnan(self.measured) else self.measured
        data.update(passed=self.passed, verdict=self.verdict)
        return data


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("| " + " | ".join("---" for _ in self.header) + " |")
        lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows)
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


def targets_table(targets: Sequence[Target]) -> Table:
    table = Table("Targets", ["target", "measured", "goal", "verdict", "how"])
    for target in targets:
        measured = "-" if target.skipped else format_value(target.measured, target.unit)
        table.rows.append([target.name, measured, target.target_text(), target.verdict, target.detail])
    return table


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def summarize_profile(samples: Iterable[tuple[Sequence[tuple[str, str]], float]], top: int = 12) -> str:
    """Where the time goes, from stacks of (function, file) frames (root first) with their weights.

    Two views of self time (the frame on top of the stack), which add up to 100%: by library (the
    service's own modules by module, so one middleware stands out from another), and by function.
    """
    total = 0.0
    by_library: dict[str, float] = {}
    by_function: dict[str, float] = {}
    for stack, weight in samples:
        if not stack:
            continue
        total += weight
        function, path = stack[-1]
        library = library_of(path)
        by_library[library] = by_library.get(library, 0.0) + weight
        leaf = f"{function} ({short_path(path)})"
        by_function[leaf] = by_function.get(leaf, 0.0) + weight
    if not total:
        return "no samples"
    lines = ["self time by library:"]
    for library, weight in sorted(by_library.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {weight / total * 100:5.1f}%  {library}")
    lines.append("self time by function:")
    for leaf, weight in sorted(by_function.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {weight / total * 100:5.1f}%  {leaf}")
    return "\n".join(lines)


def library_of(path: str) -> str:
    """``.../site-packages/structlog/_output.py`` -> ``structlog``; a module of the service under
    ``src/`` -> its dotted name (``acme_service.middleware.access_log``); the standard library ->
    ``stdlib asyncio``."""
    parts = path.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0].removesuffix(".py") if rest else path
    if "src" in parts:
        rest = parts[len(parts) - parts[::-1].index("src") :]
        return ".".join(part.removesuffix(".py") for part in rest)
    for index, part in enumerate(parts[:-1]):
        if part.startswith("python3") and index and parts[index - 1] == "lib":
            return "stdlib " + parts[index + 1].removesuffix(".py")
    return parts[-1].removesuffix(".py") or path


def short_path(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages", "src"):
        if marker in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(marker) :])
    return "/".join(parts[-2:])
