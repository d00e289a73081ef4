"""`python -m etl`, the same as the `etl` console script."""

from etl.cli import main

main()
