"""The public surface is exactly `etl.__all__`, and every name in it resolves."""

import etl
import etl.load  # every stage module imported, as in a real run
import etl.pipeline
import etl.state


def test_public_api_is_pinned() -> None:
    assert etl.__all__ == [
        "AbortError",
        "AuthError",
        "DefinitionError",
        "EtlError",
        "Pipeline",
        "RunInterrupted",
        "RunOptions",
        "RunReport",
        "SourceError",
        "StateError",
        "StatusReport",
        "TooManyFailures",
        "load_pipeline",
        "run",
        "run_async",
        "status",
        "validate_pipeline",
    ]


def test_every_exported_name_resolves_even_after_the_stage_modules_are_imported() -> None:
    # A submodule named like an export (etl.validate) would shadow it once imported.
    for name in etl.__all__:
        assert getattr(etl, name).__name__ == name
