"""Event definitions for tests: the smallest valid one for stage tests, with what a test
varies on top, and a one-CSV pipeline project for tests that run the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from etl.definition import EventSpec


def event_spec(**fields: Any) -> EventSpec:
    """Constant source `app` and event name `e`, occurred_at column `ts`, customer by `cid`."""
    return EventSpec.model_validate(
        {
            "source": "app",
            "event_name": "e",
            "occurred_at": "ts",
            "customer": {"external_id": "cid"},
            **fields,
        }
    )


def signups_project(root: Path, rows: list[dict[str, object]]) -> Path:
    """`signups.yaml` over `signups.csv` (columns email, phone, signed_up_at); the token
    comes from $YOTPO_TOKEN."""
    pd.DataFrame(rows).to_csv(root / "signups.csv", index=False)
    file = root / "signups.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "name": "signups",
                "source": {"type": "csv", "path": "signups.csv"},
                "event": {
                    "source": "crm_export",
                    "event_name": "Signed Up",
                    "occurred_at": "signed_up_at",
                    "customer": {"email": "email", "phone_number": "phone"},
                },
                "destination": {"store_id": "s-1", "token": "${YOTPO_TOKEN}"},
            }
        )
    )
    return file
