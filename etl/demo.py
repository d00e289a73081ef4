"""`make demo`: the sample pipelines end to end against a local sandbox at the real pace.

Starts the sandbox on 127.0.0.1:8787 (where the sample pipelines point) with the
API's 5 requests/s limit, runs each sample pipeline through the real CLI on a
couple of hundred events, shows what the sandbox holds, and always stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from etl.redact import mask_body
from etl.sandbox.config import SandboxConfig
from etl.sandbox.process import SandboxStartError, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ["orders_shipped", "subscriptions_renewed", "reviews_written"]
STORE = "demo-store"
ROWS_PER_PIPELINE = 70
PORT = 8787


def main() -> int:
    """Run the demo; exit 0 when every pipeline ran to its end (rejects are expected)."""
    try:
        server = start_sandbox(SandboxConfig(rate_limit=5.0), port=PORT)
    except SandboxStartError as exc:  # most often: port 8787 is taken by another sandbox
        print(f"demo: could not start the sandbox on 127.0.0.1:{PORT}: {exc}", file=sys.stderr)
        return 3
    env = {**os.environ, "YOTPO_STORE_ID": STORE, "YOTPO_TOKEN": server.token}
    worst = 0
    try:
        for name in PIPELINES:
            file = ROOT / "pipelines" / f"{name}.yaml"
            command = f"etl run pipelines/{name}.yaml --limit {ROWS_PER_PIPELINE} --full-refresh"
            print(f"\n$ {command}", flush=True)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "etl",
                    "run",
                    str(file),
                    "--limit",
                    str(ROWS_PER_PIPELINE),
                    "--full-refresh",
                ],
                env=env,
                check=False,
            )
            worst = max(worst, result.returncode)
        stats = server.stats(STORE)
        print(
            f"\nThe sandbox now holds {stats['count']} events for store {STORE!r}; "
            f"answers by status: {stats['status_counts']}."
        )
        for event in server.events(STORE)[:2]:
            print(f"  e.g. {mask_body(event)}")
    finally:
        server.stop()
    return 0 if worst <= 1 else worst


if __name__ == "__main__":
    sys.exit(main())
