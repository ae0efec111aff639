"""The Paper Digest pages wired into the Airflow api-server: Airflow's own access check, its metadata database
for the run pages, and the newsletter config found the way the DAGs find it.

Imported only inside the api-server (see plugin.py): it pulls in Airflow's FastAPI security module.

Access: plugin endpoints are not protected by Airflow by default. Every route here depends on
`requires_access_dag("GET", param_dag_id="digest_newsletter")` (airflow/api_fastapi/core_api/security.py),
which authenticates the caller from `Authorization: Bearer <JWT>` or the UI's `_token` cookie through
`get_user` (401 without a token or with an expired one, 403 with an invalid one) and then asks the configured
auth manager whether that user may read the digest DAG (403 otherwise): whoever may read the DAG's task logs
may read this page, which shows the same delivery failures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.configuration import conf
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from fastapi import Depends, FastAPI
from sqlalchemy import select

from newsletter.config import Settings, load_settings
from newsletter_airflow.views import DIGEST_DAG, create_app

BUILD_TASK = "build_issue"  # its return value names the issue the run built ({"issue_date": ..., ...})


def newsletter_settings() -> Settings:
    """NEWSLETTER_CONFIG, else the newsletter.toml beside the DAGs folder (where the DAGs look too), else
    the usual lookup (./newsletter.toml, built-in defaults). NEWSLETTER_* variables override as everywhere."""
    explicit = os.environ.get("NEWSLETTER_CONFIG")
    beside_dags = Path(conf.get("core", "dags_folder")).resolve().parent / "newsletter.toml"
    return load_settings(explicit or (beside_dags if beside_dags.is_file() else None))


def resolve_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The run's dates from Airflow's metadata database, and what its build_issue task returned (if it ran)."""
    with create_session(scoped=False) as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            return None
        xcom = session.scalars(
            select(XComModel).where(
                XComModel.dag_run_id == run.id,
                XComModel.task_id == BUILD_TASK,
                XComModel.key == "return_value",
                XComModel.map_index == -1,
            )
        ).first()
        built = XComModel.deserialize_value(xcom) if xcom is not None else None
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "state": getattr(run.state, "value", run.state),
            "run_type": getattr(run.run_type, "value", run.run_type),
            "logical_date": run.logical_date,
            "data_interval_start": run.data_interval_start,
            "data_interval_end": run.data_interval_end,
            "run_after": run.run_after,
            "built": built if isinstance(built, dict) else None,
        }


def build_app() -> FastAPI:
    return create_app(
        newsletter_settings,
        dependencies=[Depends(requires_access_dag("GET", param_dag_id=DIGEST_DAG))],
        resolve_run=resolve_run,
    )
