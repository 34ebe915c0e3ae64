"""The application layer: Prefect flows (thin orchestration: retries, task runners, artifacts) and the CLI.

It depends on the library `misr`; the library never imports it.

Offline and private by default however a flow is started (`misr`, `python -m pipelines.<stage>` as
`dvc repro` runs it, a Prefect worker), from a shell without scripts/env.sh too: set here, before
Prefect, DVC or transformers are imported. An explicit setting in the environment wins.
"""

import os

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(_name, _value)
