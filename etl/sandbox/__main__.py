"""`python -m etl.sandbox`: the sandbox without loading the rest of the CLI.

SIGUSR1 prints every thread's stack to stderr (before the imports, so a start that
hangs anywhere can say where): `start_sandbox` sends it to a start that timed out.
"""

import faulthandler
import signal

faulthandler.register(signal.SIGUSR1, all_threads=True)

from etl.sandbox.command import sandbox_command  # noqa: E402

sandbox_command(prog_name="python -m etl.sandbox")
