"""The application layer: Prefect flows (thin orchestration: retries, task runners, artifacts) and the CLI.

It depends on the library `misr`; the library never imports it.
"""
