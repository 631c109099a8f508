"""Credentials never reach a screen, a log or syslog.

A URL may carry ``user:password@`` (an operator pasting the StackStorm URL with
its key, a RabbitMQ management URL): every line we print, audit or send to
syslog goes through ``text()``, which keeps the scheme and host and replaces
the user information with ``***``.
"""
import re

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@")


def text(value):
    """``value`` (a str) with the user information of every URL in it masked."""
    if "@" not in value:
        return value                 # the common case costs one scan
    return _USERINFO.sub(r"\1***@", value)

