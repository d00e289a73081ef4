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
    result = subprocess.run(
        [sys.executable, "-c", CODE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == expected


HOLES = (
    "import sys\n"
    "from etl.memory import bound_malloc\n"
    "applied = bound_malloc() if sys.argv[1] == 'bound' else None\n"
    "def rss():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS'):\n"
    "            return int(line.split()[1]) // 1024\n"
    "del bytearray(b'x' * (30 << 20))[:]  # a large block freed: glibc raises its threshold\n"
    "blocks = [b'x' * (2 << 20) for _ in range(30)]  # 60 MB of 2 MB column arrays\n"
    "before = rss()\n"
    "del blocks[:-1]  # the last one pins the heap's top\n"
    "print(applied, before - rss())\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_column_arrays_go_back_to_the_system_once_malloc_is_bound() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def freed(mode: str) -> tuple[str, int]:
        result = subprocess.run(
            [sys.executable, "-c", HOLES, mode],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
            check=True,
        )
        applied, megabytes = result.stdout.split()
        return applied, int(megabytes)

    applied, returned = freed("bound")
    assert applied == "True"
    assert returned >= 55  # all but the last 2 MB block
    assert freed("default")[1] < 5  # without: held in the heap's holes
