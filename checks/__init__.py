"""One module per failure class, installed as ``autoremedy.checks``.

Each module defines ``MANIFEST`` (a dict literal: name, summary, default
thresholds and timeout, remediation, and the Sensu/Zabbix/StackStorm wiring the
packaging generators build from it; autoremedy/contract/registry.py reads it without
importing the module), ``add_arguments(parser)`` and ``check(args) -> Result``
(and ``discover(args)`` for Zabbix low-level discovery). Checks import nothing they do not use at start-up:
heavy libraries load inside the function that needs them. Checks never import
handlers or remediations.
"""
