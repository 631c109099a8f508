"""The host-wide circuit breaker in front of StackStorm.

Every handler process on the host shares one small state file
(``<state_dir>/breaker.json``). Once StackStorm was found unreachable (connection
error, timeout, 5xx), later events skip the POST and go straight to the fallback
for ``stackstorm.breaker_cooldown`` seconds, instead of each paying the connect or
read timeout at 3 a.m. After the cool-down exactly one process (the *probe*) tries
again; the others keep falling back until it reports. A 2xx closes the breaker.

Configuration errors (4xx, TLS verification) do not open it: they are not outages
and must stay loud on every event.

The happy path costs one unlocked read of a tiny file and no write.
"""
import os
import time

from autoremedy import statefile

CLOSED, OPEN, PROBING = "closed", "open", "probing"


class Breaker:
    def __init__(self, path, cooldown=60.0, probe_lease=10.0, configured=True, clock=time.time):
        self.path = path
        self.cooldown = float(cooldown)
        self.probe_lease = float(probe_lease)
        self.configured = configured
        self.clock = clock

    @classmethod
    def for_config(cls, config):
        st2 = config.get("stackstorm") or {}
        lease = float(st2.get("connect_timeout", 2.0)) + float(st2.get("read_timeout", 5.0)) + 3.0
        return cls(os.path.join(config.state_dir, "breaker.json"),
                   cooldown=st2.get("breaker_cooldown", 60.0), probe_lease=lease,
                   configured=bool(st2.get("url")))

    def state(self):
        return statefile.load(self.path, {}) or {}

    def allow(self):
        """May this process try StackStorm now? True when closed, or when it is this
        process's turn to probe after the cool-down."""
        now = self.clock()
        current = self.state()
        if current.get("state", CLOSED) == CLOSED:
            return True
        if now < current.get("opened_at", 0) + self.cooldown:
            return False
        if current.get("probe_until", 0) > now:
            return False            # another process is probing right now
        with statefile.updating(self.path) as data:
            if data.get("state", CLOSED) == CLOSED:
                return True
            if now < data.get("opened_at", 0) + self.cooldown or data.get("probe_until", 0) > now:
                return False
            data.update(state=PROBING, probe_until=round(now + self.probe_lease, 3),
                        probe_pid=os.getpid())
            return True

    def success(self):
        now = self.clock()
        current = self.state()
        if current.get("state", CLOSED) == CLOSED and current:
            if now - current.get("last_success", 0) < 60:
                return                  # nothing to record: keep the happy path write-free
        with statefile.updating(self.path) as data:
            was = data.get("state", CLOSED)
            data.clear()
            data.update(state=CLOSED, last_success=round(now, 3))
            if was != CLOSED:
                data["closed_at"] = round(now, 3)

    def failure(self, reason):
        now = self.clock()
        with statefile.updating(self.path) as data:
            data["failures"] = int(data.get("failures", 0)) + 1
            if data.get("state", CLOSED) == CLOSED:
                data["since"] = round(now, 3)
            data.update(state=OPEN, opened_at=round(now, 3), last_error=str(reason)[:300],
                        probe_until=0)
            data.pop("probe_pid", None)

    def describe(self):
        """One line for ``autoremedy status``."""
        if not self.configured:
            return "not configured (stackstorm.url is empty): every event falls back locally"
        now = self.clock()
        data = self.state()
        state = data.get("state", CLOSED)
        if state == CLOSED:
            last = data.get("last_success")
            when = f", last delivery {_ago(now - last)} ago" if last else ""
            return f"closed: delivering to StackStorm{when}"
        since = data.get("since", data.get("opened_at", now))
        text = (f"{state}: StackStorm unreachable for {_ago(now - since)} "
                f"({data.get('failures', 0)} failure(s); last: {data.get('last_error', '?')})")
        if state == PROBING and data.get("probe_until", 0) > now:
            return text + f"; probe in flight (pid {data.get('probe_pid')})"
        wait = data.get("opened_at", now) + self.cooldown - now
        return text + (f"; next probe in {wait:.0f}s" if wait > 0 else "; next event probes")


def _ago(seconds):
    seconds = max(0.0, seconds)
    for unit, width in (("h", 3600), ("m", 60)):
        if seconds >= width:
            return f"{seconds / width:.1f}{unit}"
    return f"{seconds:.0f}s"
