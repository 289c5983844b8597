"""The pytest-mlperf GitHub Action: benchmark on this runner, compare with the base, report and gate.

Entry point: ``python -m action [setup|run|report]`` (see ``action/__main__.py``). This package stays importable
with the standard library alone, because ``setup`` runs before the Action's private virtualenv exists; modules
that need ``requests`` are imported only by the subcommands that use them.
"""
