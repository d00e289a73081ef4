"""The CLI's Arrow memory pool: jemalloc unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

CODE = (
    "import pyarrow as pa\n"
    "from etl.memory import bound_arrow_memory\n"
    "bound_arrow_memory()\n"
    "print(pa.default_memory_pool().backend_name)\n"
)


@pytest.mark.parametrize(("chosen", "expected"), [(None, "jemalloc"), ("system", "system")])
def test_jemalloc_unless_the_user_chose_a_pool(chosen: str | None, expected: str) -> None:
    if chosen is None:
        try:
            pa.jemalloc_memory_pool()
        except NotImplementedError:
            pytest.skip("this pyarrow is built without jemalloc: the CLI keeps the default")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    result = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == expected
