"""Every SQL example of the README, and every `sensor-platform sql` command in it, runs against the
demo's data and answers something: the demo runs once for the module (on the current time, as a
user's `make demo` does), then each example runs from the checkout-like folder it left, the way
the README says to run it (`make sql`: the DuckDB CLI on the analysts' file)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sensor_platform.catalog.sql_prompt import find_cli

pytestmark = pytest.mark.integration  # Dagster runs

README = Path(__file__).parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DATE_LITERAL = re.compile(r"'\d{4}-\d{2}-\d{2}")


def readme_blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


SQL_EXAMPLES = readme_blocks("sql")
SQL_COMMANDS = [
    line.strip()
    for block in readme_blocks("bash")
    for line in block.splitlines()
    if "sensor-platform sql" in line and " -c " in line
]


def _example_id(text: str) -> str:
    return " ".join(text.split())[:60]


@pytest.fixture(scope="module")
def checkout(demo_checkout) -> Path:
    """A folder laid out like a checkout after `make demo`: data/ with the lake, the warehouse and
    the analysts' file (the demo builds the catalog and that file)."""
    assert (demo_checkout.root / "data" / "analytics.duckdb").is_file()
    return demo_checkout.root


def run_in_checkout(args: list[str], checkout: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSOR_")}
    return subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_has_examples_and_no_hard_coded_dates():
    assert len(SQL_EXAMPLES) >= 4 and SQL_COMMANDS
    for sql in SQL_EXAMPLES:
        assert not DATE_LITERAL.search(sql), f"a date that the demo's data may not have: {sql}"


@pytest.mark.parametrize("sql", SQL_EXAMPLES, ids=_example_id)
def test_sql_example_answers_on_the_demo_data(checkout, sql):
    cli = find_cli()
    assert cli, "the DuckDB CLI is needed: pip install duckdb-cli (make install does)"
    out = run_in_checkout([cli, "-readonly", "-csv", "data/analytics.duckdb", "-c", sql], checkout)
    assert out.returncode == 0 and not out.stderr, out.stderr
    header, *rows = out.stdout.splitlines()
    assert rows, f"no rows on the demo's data: {sql}"


@pytest.mark.parametrize("command", SQL_COMMANDS, ids=_example_id)
def test_sql_command_answers_on_the_demo_data(checkout, command):
    program, *args = shlex.split(command)
    assert program.endswith("sensor-platform")
    for prompt in ([], ["--builtin"]):
        out = run_in_checkout(
            [sys.executable, "-m", "sensor_platform.cli", *args, *prompt], checkout
        )
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.strip().splitlines()) > 3, out.stdout  # a header and rows
