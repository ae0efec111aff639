"""The pipeline's steps, on top of the stages: what the CLI and the Airflow tasks both call.

`ingest` (sources -> store), `steps` (issue, render, archive, ledger, send, monitoring) and `send` (the whole
`newsletter send` step). Each step is idempotent for its period and returns small JSON-able dicts.
"""
