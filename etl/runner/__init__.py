"""One run as small parts (the public entry points are `etl.run`, `etl.run_async` and
`etl.validate_pipeline`, defined in `execute`):

    plan.py       pure: the Mode, what opens, the window, the limit, what is diffed/retried
    ledger.py     the run's own entries in state: run row, key types, watermark, end
    prepare.py    the worker thread's stage: chunk -> split -> batch -> diff
    feed.py       failed events of earlier runs first, then the one-ahead chunk queue
    tally.py      what each chunk adds to the report, the quarantine and the watermark
    sinks/        one per mode (load | dry run | validate): the mode is the sink plugged in
    watermark.py  the watermark rule of SPEC §6
    context.py    what the parts of a begun run share
    execute.py    puts the parts together; run_async, run, validate_pipeline

Named `runner`, not `run`: a subpackage `etl.run` would shadow the function `etl.run`
once imported.
"""
