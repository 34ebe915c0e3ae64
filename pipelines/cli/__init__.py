"""The `misr` command line: one module per command group (a DVC stage's command is a module of its own).

Its environment defaults (offline, no analytics, Prefect's start-up timeout) are set by the `pipelines`
package, which every flow and command imports first.
"""
