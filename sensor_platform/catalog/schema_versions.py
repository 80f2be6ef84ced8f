"""Schema versions of each dataset: snapshots (columns and metrics seen), diffs and the history.

New metrics arrive without code changes, so a dataset's schema is its columns *and* the set of
metric names found in its files. Every change gets a new version number and a diff; a removed or
retyped column is breaking (readers' queries stop working), added columns and metrics are not.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class SchemaSnapshot:
    columns: dict[str, str]  # name -> type, in file order
    metrics: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        body = json.dumps([list(self.columns.items()), sorted(self.metrics)])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        # a list of pairs: column order is part of the schema, and JSON objects get re-sorted
        return {
            "columns": [[n, t] for n, t in self.columns.items()],
            "metrics": sorted(self.metrics),
        }

    @classmethod
    def from_json(cls, data: dict) -> "SchemaSnapshot":
        return cls(
            columns={n: t for n, t in data["columns"]}, metrics=tuple(data.get("metrics", ()))
        )


@dataclass(frozen=True)
class SchemaDiff:
    added_columns: tuple[str, ...] = ()
    removed_columns: tuple[str, ...] = ()
    type_changes: tuple[tuple[str, str, str], ...] = ()  # (column, old type, new type)
    added_metrics: tuple[str, ...] = ()
    removed_metrics: tuple[str, ...] = ()

    @property
    def breaking(self) -> bool:
        return bool(self.removed_columns or self.type_changes)

    @property
    def is_empty(self) -> bool:
        return not (
            self.added_columns
            or self.removed_columns
            or self.type_changes
            or self.added_metrics
            or self.removed_metrics
        )

    def to_json(self) -> dict:
        return {
            "added_columns": list(self.added_columns),
            "removed_columns": list(self.removed_columns),
            "type_changes": [
                {"column": c, "old_type": old, "new_type": new} for c, old, new in self.type_changes
            ],
            "added_metrics": list(self.added_metrics),
            "removed_metrics": list(self.removed_metrics),
            "breaking": self.breaking,
        }

    def describe(self) -> str:
        parts = [
            f"{label}: {', '.join(items)}"
            for label, items in (
                ("added columns", self.added_columns),
                ("removed columns", self.removed_columns),
                ("type changes", [f"{c} {o} -> {n}" for c, o, n in self.type_changes]),
                ("added metrics", self.added_metrics),
                ("removed metrics", self.removed_metrics),
            )
            if items
        ]
        return "; ".join(parts) or "no change"


def diff_schemas(old: SchemaSnapshot, new: SchemaSnapshot) -> SchemaDiff:
    return SchemaDiff(
        added_columns=tuple(c for c in new.columns if c not in old.columns),
        removed_columns=tuple(c for c in old.columns if c not in new.columns),
        type_changes=tuple(
            (c, old.columns[c], new.columns[c])
            for c in new.columns
            if c in old.columns and old.columns[c] != new.columns[c]
        ),
        added_metrics=tuple(sorted(set(new.metrics) - set(old.metrics))),
        removed_metrics=tuple(sorted(set(old.metrics) - set(new.metrics))),
    )


@dataclass(frozen=True)
class SchemaVersion:
    dataset: str
    version: int
    recorded_at: datetime
    snapshot: SchemaSnapshot
    diff: SchemaDiff | None  # None for a dataset's first version

    @property
    def breaking(self) -> bool:
        return self.diff is not None and self.diff.breaking

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "recorded_at": self.recorded_at.isoformat(),
            "fingerprint": self.snapshot.fingerprint,
            **self.snapshot.to_json(),
            "diff": None if self.diff is None else self.diff.to_json(),
        }


def _version_from_json(dataset: str, data: dict) -> SchemaVersion:
    diff = data.get("diff")
    return SchemaVersion(
        dataset=dataset,
        version=int(data["version"]),
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
        snapshot=SchemaSnapshot.from_json(data),
        diff=None
        if diff is None
        else SchemaDiff(
            added_columns=tuple(diff["added_columns"]),
            removed_columns=tuple(diff["removed_columns"]),
            type_changes=tuple(
                (t["column"], t["old_type"], t["new_type"]) for t in diff["type_changes"]
            ),
            added_metrics=tuple(diff["added_metrics"]),
            removed_metrics=tuple(diff["removed_metrics"]),
        ),
    )


@dataclass
class SchemaHistory:
    """Every version of every dataset's schema, oldest first; stored as one JSON document."""

    versions: dict[str, list[SchemaVersion]] = field(default_factory=dict)

    def latest(self, dataset: str) -> SchemaVersion | None:
        history = self.versions.get(dataset)
        return history[-1] if history else None

    def record(
        self, dataset: str, snapshot: SchemaSnapshot, at: datetime
    ) -> tuple[SchemaVersion, bool]:
        """The dataset's current version after seeing `snapshot`, and whether it is new."""
        latest = self.latest(dataset)
        if latest is not None and latest.snapshot.fingerprint == snapshot.fingerprint:
            return latest, False
        diff = None if latest is None else diff_schemas(latest.snapshot, snapshot)
        version = SchemaVersion(
            dataset=dataset,
            version=1 if latest is None else latest.version + 1,
            recorded_at=at,
            snapshot=snapshot,
            diff=diff,
        )
        self.versions.setdefault(dataset, []).append(version)
        return version, True

    def to_json(self) -> str:
        return json.dumps(
            {name: [v.to_json() for v in history] for name, history in self.versions.items()},
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes | None) -> "SchemaHistory":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            {name: [_version_from_json(name, v) for v in history] for name, history in data.items()}
        )
