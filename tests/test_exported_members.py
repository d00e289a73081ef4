"""The public surface is exactly `etl.__all__`, and every name in it resolves."""

import etl


def test_public_api_is_pinned() -> None:
    assert etl.__all__ == [
        "AbortError", "AuthError", "DefinitionError", "EtlError", "Pipeline", "RunInterrupted",
        "RunOptions", "RunReport", "SourceError", "TooManyFailures", "load_pipeline", "run",
        "run_async", "validate",
    ]


def test_every_exported_name_resolves() -> None:
    for name in etl.__all__:
        assert getattr(etl, name).__name__ == name
