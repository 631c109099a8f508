"""Every exit code autoremedy uses, in one place.

A check's exit code is its state, by the monitoring plugin convention that
Sensu, Nagios and Zabbix's external checks read
(https://www.monitoring-plugins.org/doc/guidelines.html#AEN78): 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN. A command line a check cannot use is
UNKNOWN (3): exit 0 would read as OK to whatever runs us, 2 as CRITICAL.

The other commands (handle, remediate, replay) say what happened to the event.
"""
# Monitoring-plugin states (autoremedy.contract.result.Status holds the same numbers).
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

EXIT_OK = 0
EXIT_ESCALATED = 1   # handled, but a human must act (escalated, refused, not remediated)
EXIT_LEFT = 1        # replay: events are left in the spool
EXIT_FAILED = 1      # collect: the bundle could not be written
EXIT_BAD_INPUT = 2   # an event or command line that cannot be used (dead-lettered when it is an event)
EXIT_CONFIG = 3      # the configuration cannot be used
EXIT_USAGE = UNKNOWN  # the top-level command line cannot be used
EXIT_NOT_WIRED = 4    # zabbix-setup: an alert would fall back for lack of configuration
EXIT_TEST_FAILED = 5  # zabbix-setup --test: the test alert did not reach StackStorm
