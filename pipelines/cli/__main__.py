"""`python -m pipelines.cli ...` (e.g. under `torchrun -m pipelines.cli train ...`)."""

from pipelines.cli.main import main

main()
