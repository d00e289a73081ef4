"""`python -m etl.sandbox`: the sandbox without loading the rest of the CLI."""

from etl.sandbox.command import sandbox_command

sandbox_command(prog_name="python -m etl.sandbox")
