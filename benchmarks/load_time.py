"""Benchmark: how long a new process takes to load the platform's code location, against
`import dagster` alone, measured in the same run.

Every Dagster run is a new process that imports its code location, so this is paid by every Kafka
range, raw hour and alert run. Each measurement is a fresh interpreter (`python -c ...`), timed
from inside it (interpreter start-up excluded, the same for both); the two are interleaved so a
busy machine slows both alike. Target: the platform's location in at most 2x `import dagster`.

    .venv/bin/python benchmarks/load_time.py [--repeat 7]
"""

import argparse
import statistics
import subprocess
import sys

SNIPPETS = {
    "import dagster": "import dagster",
    "platform location (import + build Definitions)": (
        "from sensor_platform.definitions import defs; defs()"
    ),
    "analytics location (dbt, for comparison)": (
        "from sensor_platform.dbt_definitions import defs; defs()"
    ),
}
TIMED = (
    "import time, warnings; warnings.simplefilter('ignore'); t = time.perf_counter(); {code}; "
    "print(time.perf_counter() - t)"
)


def measure(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", TIMED.format(code=code)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per measurement")
    args = parser.parse_args()
    measure(SNIPPETS["platform location (import + build Definitions)"])  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    for _ in range(args.repeat):
        for name, code in SNIPPETS.items():
            times[name].append(measure(code))
    print(f"median of {args.repeat} fresh processes each\n")
    print(f"{'what':<50}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, values in times.items():
        print(f"{name:<50}{statistics.median(values):>10.2f}{min(values):>8.2f}{max(values):>8.2f}")
    base = statistics.median(times["import dagster"])
    platform = statistics.median(times["platform location (import + build Definitions)"])
    print(f"\nplatform location / import dagster: {platform / base:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
