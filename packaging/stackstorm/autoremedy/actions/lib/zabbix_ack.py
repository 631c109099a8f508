"""Write a remediation's outcome back to the Zabbix problem that caused it.

``event.acknowledge`` with action 6 (acknowledge + message): the problem shows
who handled it and how, and Zabbix's update operations can notify people.
Closing is a separate call (action 1, only for triggers with manual_close)
because one combined call sent no update notification (measured on Zabbix 6.0.14, event.acknowledge).
Kept free of StackStorm imports so it is testable against a real Zabbix.
"""
ACKNOWLEDGE, CLOSE, MESSAGE = 2, 1, 4


def client(url, user, password, timeout=15, verify=True):
    from pyzabbix import ZabbixAPI
    zapi = ZabbixAPI(url, timeout=timeout)
    zapi.session.verify = verify
    zapi.login(user, password)
    return zapi


def acknowledge(url, user, password, eventid, message, close=False, verify=True):
    """Acknowledge ``eventid`` with ``message``; optionally close it. Returns the ids."""
    zapi = client(url, user, password, verify=verify)
    # Zabbix limits an acknowledgement message to 2048 characters.
    done = zapi.event.acknowledge(eventids=[str(eventid)], action=ACKNOWLEDGE | MESSAGE,
                                  message=message[:2048])
    if close:
        zapi.event.acknowledge(eventids=[str(eventid)], action=CLOSE)
    return done["eventids"]
