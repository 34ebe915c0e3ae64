"""The `misr` command line: one module per command group (a DVC stage's command is a module of its own).

Offline and private by default, also when a DVC stage runs us from a shell without scripts/env.sh:
set here, before Prefect, DVC or transformers are imported (an explicit setting in the environment wins).
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
