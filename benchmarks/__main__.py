"""`make bench`: run every benchmark (or those named) and print their figures.

python -m benchmarks                    # all
python -m benchmarks dry_run state_diff # some
"""

from __future__ import annotations

import importlib
import sys
import time

ALL = [
    "extract_memory",
    "transform_speed",
    "dry_run",
    "state_diff",
    "sandbox_load",
    "load_throughput",
    "load_faults",
    "load_saturation",
    "report_size",
    "shared_budget",
    "workers",
    "many_stores",
]


def main(names: list[str]) -> None:
    for name in names or ALL:
        print(f"\n=== {name}", flush=True)
        started = time.monotonic()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"=== {name} took {time.monotonic() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
