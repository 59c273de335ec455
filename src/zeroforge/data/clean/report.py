"""``CleanReport``: what ``clean`` removed, changed and flagged, as JSON and as a readable summary.

Every input row is either written or removed by exactly one rule (the first that fires), so
``rows_in == rows_out + sum(removed.values())`` always holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroforge.io import atomic_write_json, atomic_write_text

# The rules in the order they are applied to a row.
RULES = (
    "malformed",
    "bad_encoding",
    "missing_value",
    "empty_text",
    "invalid_label",
    "too_short",
    "too_long",
    "language",
    "exact_duplicate",
    "near_duplicate",
)
_MAX_CLUSTER_LINES = 10  # member lines listed per cluster


def preview(value: Any, width: int = 100) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class CleanReport:
    input: str
    output: str
    format: str
    rows_in: int = 0
    rows_out: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    """Rows removed per rule (each row under the first rule that removed it)."""
    flagged: dict[str, int] = field(default_factory=dict)
    """Rows kept but reported: ``invalid_label`` with ``labels.invalid: keep``, ``bad_encoding`` with ``replace``."""
    modified: dict[str, int] = field(default_factory=dict)
    """Kept rows changed: ``normalized`` (any cell), ``spelling`` (rows), ``spelling_words``, ``filled`` (cells)."""
    missing: dict[str, dict[str, int]] = field(default_factory=dict)
    """Column -> ``{missing, dropped, filled, kept}``: cells that were missing and what became of them."""
    fill_values: dict[str, Any] = field(default_factory=dict)
    """Column -> the value missing cells were filled with (mean, median, mode or constant)."""
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Rule -> a few ``{line, text, detail}`` examples."""
    exact_clusters: int = 0
    near_clusters: int = 0
    clusters: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"exact": [], "near": []})
    """The largest duplicate clusters: ``{kept_line, size, lines, text}`` (near: also ``min_similarity``)."""
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    max_examples: int = field(default=5, repr=False)
    max_clusters: int = field(default=20, repr=False)
    _open: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"exact": {}, "near": {}}, repr=False
    )

    # ---------------------------------------------------------------- recording

    def remove(self, rule: str, line: int, text: Any, detail: str = "") -> None:
        self.removed[rule] += 1
        self._example(rule, line, text, detail)

    def flag(self, rule: str, line: int, text: Any, detail: str = "") -> None:
        self.flagged[rule] = self.flagged.get(rule, 0) + 1
        self._example(rule, line, text, detail)

    def count(self, what: str, n: int = 1) -> None:
        self.modified[what] = self.modified.get(what, 0) + n

    def missing_cell(self, column: str, outcome: str) -> None:
        counts = self.missing.setdefault(column, {"missing": 0, "dropped": 0, "filled": 0, "kept": 0})
        counts["missing"] += 1
        counts[outcome] += 1

    def _example(self, rule: str, line: int, text: Any, detail: str) -> None:
        examples = self.examples.setdefault(rule, [])
        if len(examples) < self.max_examples:
            examples.append({"line": line, "text": preview(text), "detail": detail})

    def duplicate(self, kind: str, kept_line: int, line: int, text: Any, similarity: float = 1.0) -> None:
        """Row ``line`` is a ``kind`` ("exact"/"near") duplicate of the kept row at ``kept_line``."""
        cluster = self._open[kind].get(kept_line)
        if cluster is None:
            cluster = {"kept_line": kept_line, "size": 1, "lines": [], "text": preview(text)}
            if kind == "near":
                cluster["min_similarity"] = similarity
            self._open[kind][kept_line] = cluster
        cluster["size"] += 1
        if len(cluster["lines"]) < _MAX_CLUSTER_LINES:
            cluster["lines"].append(line)
        if kind == "near":
            cluster["min_similarity"] = round(min(cluster["min_similarity"], similarity), 4)

    def finish(self) -> None:
        """Keep the largest clusters (ties: the earliest) and drop the working state."""
        for kind, open_clusters in self._open.items():
            ranked = sorted(open_clusters.values(), key=lambda c: (-c["size"], c["kept_line"]))
            self.clusters[kind] = ranked[: self.max_clusters]
            setattr(self, f"{kind}_clusters", len(open_clusters))
        self._open = {"exact": {}, "near": {}}

    # ---------------------------------------------------------------- output

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_") and f.name not in ("max_examples", "max_clusters")
        }

    def summary(self) -> str:
        total_removed = sum(self.removed.values())
        rate = self.rows_in / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"zeroforge clean: {self.input} -> {self.output} ({self.format})",
            f"rows in:  {self.rows_in:,}",
            f"rows out: {self.rows_out:,}  (removed {total_removed:,}; {self.seconds:.1f} s, {rate:,.0f} rows/s)",
        ]
        if total_removed:
            lines.append("removed per rule:")
            for rule, n in self.removed.items():
                if n:
                    lines.append(f"  {rule:<16} {n:>9,}")
        if self.flagged:
            lines.append("flagged (kept):")
            lines += [f"  {rule:<16} {n:>9,}" for rule, n in self.flagged.items()]
        if self.modified:
            lines.append("modified (kept rows):")
            lines += [f"  {what:<16} {n:>9,}" for what, n in self.modified.items()]
        if self.missing:
            lines.append("missing values per column: missing / dropped / filled / kept")
            for column, c in self.missing.items():
                fill = f"  fill = {self.fill_values[column]!r}" if column in self.fill_values else ""
                lines.append(
                    f"  {column:<16} {c['missing']:>7,} / {c['dropped']:,} / {c['filled']:,} / {c['kept']:,}{fill}"
                )
        for rule, examples in self.examples.items():
            lines.append(f"examples of {rule}:")
            for ex in examples:
                detail = f" [{ex['detail']}]" if ex["detail"] else ""
                lines.append(f"  line {ex['line']}{detail}: {ex['text']}")
        for kind in ("exact", "near"):
            n = getattr(self, f"{kind}_clusters")
            if n:
                lines.append(f"{kind} duplicate clusters: {n:,} (largest first)")
                for c in self.clusters[kind][:5]:
                    sim = f", similarity >= {c['min_similarity']:.2f}" if kind == "near" else ""
                    more = "..." if c["size"] - 1 > len(c["lines"]) else ""
                    lines.append(
                        f"  line {c['kept_line']} kept, {c['size'] - 1} removed (lines "
                        f"{', '.join(map(str, c['lines']))}{more}{sim}): {c['text']}"
                    )
        return "\n".join(lines) + "\n"

    def save(self, json_path: str | Path, text_path: str | Path | None = None) -> None:
        """Write the JSON report and (default ``<json without .json>.txt``) the readable summary."""
        json_path = Path(json_path)
        atomic_write_json(json_path, self.to_dict())
        if text_path is None:
            text_path = json_path.with_suffix(".txt")
        atomic_write_text(text_path, self.summary())
