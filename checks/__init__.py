"""One module per failure class, installed as ``autoremedy.checks``.

Each module defines ``NAME``, optional ``THRESHOLDS = (warning, critical)``,
``add_arguments(parser)`` and ``check(args) -> Result`` (and ``discover(args)``
for Zabbix low-level discovery). Checks import nothing they do not use at start-up:
heavy libraries load inside the function that needs them. Checks never import
handlers or remediations.
"""
