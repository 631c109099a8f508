"""autoremedy: self-healing for OpenStack clouds, as Sensu/Zabbix checks and handlers.

The core every part shares: result, ranges, render, runtime, config, execute,
audit, guard, remediation, statefile (and, for the handlers, event, spool,
stackstorm). checks/, handlers/ and remediations/ install as autoremedy.checks,
autoremedy.handlers and autoremedy.remediations; the core never imports them.
"""
__version__ = "0.1.0"
