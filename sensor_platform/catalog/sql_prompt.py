"""`sensor-platform sql`: a read-only SQL prompt on the analysts' DuckDB file.

It runs the DuckDB CLI when one (1.0 or later) is installed: `make install` puts the `duckdb-cli`
package's next to the project's Python. Without it, a small prompt built on the `duckdb` Python
package does: statements end with `;`, `.tables` lists the views and tables, `.quit` leaves.
Either way the file is opened read-only, so the catalog can rebuild it meanwhile.
"""

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import duckdb

MAX_ROWS = 200  # rows the built-in prompt prints per result; the rest is counted
MAX_WIDTH = 60  # characters per printed value
_VERSION = re.compile(r"v(\d+)\.(\d+)")


class MissingAnalyticsFile(FileNotFoundError):
    """The analysts' file has not been built yet."""


def check_file(path: str | Path) -> Path:
    """`path` if it exists; a MissingAnalyticsFile saying how to build it otherwise."""
    file = Path(path)
    if not file.is_file():
        raise MissingAnalyticsFile(
            f"no analysts' file at {file} yet: it is written by the data_catalog asset "
            "(`make demo` builds it; in the UI, materialize data_catalog or wait for the "
            "refresh_data_catalog schedule). Another file: --file or SENSOR_ANALYTICS_DB."
        )
    return file


def find_cli() -> str | None:
    """The DuckDB CLI next to this Python (the project's virtualenv) or on the PATH, if it is
    1.0 or later (older ones cannot read the file's storage format)."""
    beside = Path(sys.executable).with_name("duckdb")
    for candidate in (str(beside) if beside.is_file() else None, shutil.which("duckdb")):
        if candidate and _cli_major(candidate) >= 1:
            return candidate
    return None


def run_cli(cli: str, path: Path, command: str | None) -> int:
    """The DuckDB CLI on `path`, read-only: interactive, or one `command` and out."""
    args = [cli, "-readonly", str(path)] + (["-c", command] if command else [])
    return subprocess.call(args)


def run_builtin(path: Path, command: str | None, stdin: TextIO, stdout: TextIO) -> int:
    """The built-in prompt on `path`, read-only: `command` alone, else statements from `stdin`
    (a prompt is shown when it is a terminal). Returns 1 when a statement failed."""
    failed = False
    with duckdb.connect(str(path), read_only=True) as con:
        statements = [command] if command else _statements(stdin, stdout)
        for sql in statements:
            if sql.strip() in (".quit", ".exit"):
                break
            try:
                _run(con, sql, stdout)
            except duckdb.Error as err:
                failed = True
                print(f"Error: {err}", file=stdout)
    return 1 if failed else 0


def _run(con: duckdb.DuckDBPyConnection, sql: str, out: TextIO) -> None:
    if sql.strip() == ".tables":
        sql = "SELECT table_name, table_type FROM information_schema.tables ORDER BY 1"
    result = con.execute(sql)
    if result.description is None:
        return
    columns = [d[0] for d in result.description]
    rows = result.fetchmany(MAX_ROWS)
    more = 0
    while chunk := result.fetchmany(10_000):  # counted, not kept
        more += len(chunk)
    print(format_table(columns, rows), file=out)
    shown = f"{len(rows) + more} rows" + (f" ({len(rows)} shown)" if more else "")
    print(shown, file=out)


def format_table(columns: list[str], rows: Iterable[tuple]) -> str:
    """Rows as a plain aligned text table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
        *(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells),
    ]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_WIDTH else text[: MAX_WIDTH - 1] + "…"


def _statements(stdin: TextIO, stdout: TextIO) -> Iterable[str]:
    """Statements as typed: lines gathered until one ends with `;`; dot commands alone."""
    interactive = stdin.isatty()
    if interactive:
        print("SQL on the analysts' file (read-only). End statements with ';', .quit to leave.")
    pending: list[str] = []
    while True:
        if interactive:
            print("   ...> " if pending else "sql> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        if not pending and line.strip().startswith("."):
            yield line.strip()
            continue
        pending.append(line)
        if line.rstrip().endswith(";"):
            yield "".join(pending)
            pending = []
    if "".join(pending).strip():
        yield "".join(pending)


def _cli_major(cli: str) -> int:
    try:
        out = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return -1
    found = _VERSION.search(out.stdout)
    return int(found.group(1)) if found else -1
