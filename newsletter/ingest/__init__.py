"""Ingest stage: read sources (HTTP feeds with conditional GET, local files), archive every payload, parse it.

`sources` yields archived payloads, `parse.parse_payload` turns one into posts; recording posts in the store is
the next stage's job (`newsletter.pipeline.ingest` runs the two together).
"""
