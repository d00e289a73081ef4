"""An Airflow DAG (2.4+) running one pipeline as N mapped tasks, one per partition.

Each mapped task runs `etl run --partition K/N`; with a PostgreSQL state (SPEC §11) the
tasks share every store's rate budget, and a retried task resumes where it stopped
(state, diffing). Exit 1 (some rows rejected or failed) and exit 3 (aborted) fail the
task; Airflow's retries then resend the failed events first.

Set the Airflow Variable `etl_partitions` (default 4) and the connection environment
(YOTPO_STORE_ID, YOTPO_TOKEN, ETL_STATE_URL) on the workers, e.g. from a secrets backend.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.decorators import dag, task
from airflow.models import Variable
from airflow.operators.bash import BashOperator

PIPELINE = "/opt/pipelines/orders_shipped.yaml"


@dag(
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,  # one sync at a time; the partitions of that sync run in parallel
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
    tags=["yotpo"],
)
def orders_shipped_to_yotpo() -> None:
    @task
    def partitions() -> list[str]:
        """The K/N arguments: one mapped task each."""
        count = int(Variable.get("etl_partitions", default_var=4))
        return [f"{index}/{count}" for index in range(count)]

    BashOperator.partial(
        task_id="etl_run",
        bash_command=f"etl run {PIPELINE} --partition $PARTITION",
        append_env=True,
    ).expand(env=partitions().map(lambda partition: {"PARTITION": partition}))


orders_shipped_to_yotpo()
