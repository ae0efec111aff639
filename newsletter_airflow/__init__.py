"""paper-digest inside Airflow, shipped with the `newsletter` distribution: the "Paper Digest" UI plugin
(`plugin.py`, registered through the `airflow.plugins` entry point) and the paper-store asset the DAGs update
(`assets.py`). The library `newsletter` never imports Airflow; this package is where the two meet.

Nothing is imported here: the DAG files import `assets` at parse time and every Airflow process loads `plugin`.
"""
