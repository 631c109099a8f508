"""Event handlers, installed as ``autoremedy.handlers``: sensu, zabbix, hook, replay.

Each module has ``main(argv) -> exit code``.
"""
