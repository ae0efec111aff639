"""The Airflow plugin: a "Paper Digest" page in the navigation and a "Paper Digest" tab on DAG and run pages,
served by a FastAPI app mounted in the api-server at /paper-digest.

Registered through the `airflow.plugins` entry point of the `newsletter` distribution (pyproject.toml), so
installing the package is all it takes; nothing is copied into plugins/. Every Airflow process loads plugins,
task processes included, so this module stays light: the app (Airflow's security module, the newsletter
library, templates) is imported and built on its first request, which only ever reaches the api-server.

External views (keys from airflow/api_fastapi/core_api/datamodels/plugins.py `ExternalViewResponse`): hrefs
are relative to the UI's base URL; on "dag" and "dag_run" destinations the UI replaces {DAG_ID} and {RUN_ID}
(URL-encoded) before loading the iframe. Those tabs show on every DAG; the pages say so for other DAGs.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/paper-digest"
APP_FACTORY = "newsletter_airflow.app:build_app"


class DeferredApp:
    """An ASGI app that imports and builds the real one on its first request (see the module docstring)."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._app is None:
            module, _, name = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module), name)()
        await self._app(scope, receive, send)


class PaperDigestPlugin(AirflowPlugin):
    name = "paper_digest"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": DeferredApp(APP_FACTORY), "url_prefix": URL_PREFIX, "name": "Paper Digest"},
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Paper Digest",
            "href": "paper-digest/",
            "destination": "nav",
            "nav_top_level": True,  # its own entry in the navigation bar, not under "Plugins"
            "url_route": "paper-digest",
            "icon": "paper-digest/icon.svg",
        },
        {
            "name": "Paper Digest",
            "href": "paper-digest/dags/{DAG_ID}",
            "destination": "dag",
            "url_route": "paper-digest-dag",
            "icon": "paper-digest/icon.svg",
        },
        {
            "name": "Paper Digest",
            "href": "paper-digest/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "paper-digest-run",
            "icon": "paper-digest/icon.svg",
        },
    ]
