"""Split device-sorted Parquet readings into device_id ranges read one at a time, and put the
per-range results back together in (window_start, device_id, ...) order (for an hour, without
copying them).

A raw partition is written sorted by device_id (lake/compaction.py), so its row groups cover
ascending device_id ranges and DuckDB skips every row group outside a range by its statistics:
aggregating range by range reads the file once in all, while the hash table only ever holds
one range's windows. The ranges only decide what is read when; the results are exact whatever
the files hold, since every row falls in exactly one range.
"""

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class DeviceRange:
    """device_id >= low (None: no lower bound) and device_id < high (None: no upper bound)."""

    low: str | None = None
    high: str | None = None


EVERY_DEVICE = DeviceRange()
MIN_PIECE_ROWS = 100  # below this average, interleave_windows copies instead of chunking


def device_ranges(paths: list[str], rows_per_range: int) -> list[DeviceRange]:
    """Consecutive device_id ranges of about `rows_per_range` rows each, cut at row-group
    boundaries, covering every string; one range (EVERY_DEVICE) unless every file has row groups
    in ascending, non-overlapping device_id order with statistics and no NULL device_id."""
    groups = []  # (lowest device_id, rows) of every row group of every file
    for path in paths:
        if not os.path.isfile(path):
            return [EVERY_DEVICE]  # a glob or a folder: DuckDB expands it, one pass reads it
        metadata = pq.ParquetFile(path).metadata
        if metadata.num_rows == 0:
            continue
        try:
            column = metadata.schema.names.index("device_id")
        except ValueError:
            return [EVERY_DEVICE]
        previous_high = None
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            stats = group.column(column).statistics
            if group.num_rows == 0:
                continue
            if stats is None or not stats.has_min_max or stats.null_count != 0:
                return [EVERY_DEVICE]
            if previous_high is not None and stats.min < previous_high:
                return [EVERY_DEVICE]  # not sorted by device_id: every range would read it all
            previous_high = stats.max
            groups.append((stats.min, group.num_rows))
    groups.sort()
    cuts, rows = [], 0
    for low, count in groups:
        # A device_id that spans row groups stays whole: a cut only where device_id increases.
        if rows >= rows_per_range and low > (cuts[-1] if cuts else groups[0][0]):
            cuts.append(low)
            rows = 0
        rows += count
    bounds = [None, *cuts, None]
    return [DeviceRange(low, high) for low, high in zip(bounds, bounds[1:], strict=False)]


def interleave_windows(parts: list[pa.Table]) -> pa.Table:
    """One table from per-range tables that are each sorted by window_start, then device_id,
    for ranges in ascending device_id order: window by window, range by range."""
    if len(parts) == 1:
        return parts[0]
    windows = [part.column("window_start").cast(pa.int64()).to_numpy() for part in parts]
    every_window = np.unique(np.concatenate(windows))
    starts = [np.searchsorted(w, every_window).tolist() + [len(w)] for w in windows]
    pieces = [
        (part, start[i], start[i + 1] - start[i])
        for i in range(len(every_window))
        for part, start in zip(parts, starts, strict=True)
        if start[i + 1] > start[i]
    ]
    if sum(len(w) for w in windows) < MIN_PIECE_ROWS * len(pieces):
        # Many windows (days at once): one copy beats thousands of tiny chunks downstream. A
        # stable sort by window keeps range order, then row order, inside each window.
        order = np.argsort(np.concatenate(windows), kind="stable")
        return pa.concat_tables(parts).take(order)
    # An hour: a few hundred zero-copy slices, so the result is never held twice.
    return pa.concat_tables([part.slice(offset, length) for part, offset, length in pieces])
