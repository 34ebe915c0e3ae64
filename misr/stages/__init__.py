"""One function per DVC stage: `run(<the config sections it reads>, <paths>, ...)` returns a summary.

The CLI command and the Prefect flow of a stage both call its `run`; a stage's params in dvc.yaml are
the sections its `run` takes, and its deps are the modules it imports (tests/unit/test_layout.py
checks both).
"""
