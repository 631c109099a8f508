"""A check run on this node -> Event (source ``hook``: ``autoremedy handle hook``).

The incident start and the occurrence count come from the hook's own record of
the incident (handlers/hook.py), so the id is stable across runs of the same
incident and ``guards.min_occurrences`` works on the node.
"""
import time

from autoremedy.pipeline.event import Event
from autoremedy.pipeline.sources import total


@total
def from_check(result, check, host, rendered, started=None, occurrences=None, labels=None,
               silenced=False):
    """A fresh check run on this node -> Event (source 'hook'). ``silenced``: the
    operator's silence for this check on this node (handle hook --silenced)."""
    return Event("hook", host, check, result.status, rendered, occurrences=occurrences,
                 started=started, timestamp=time.time(), labels=labels, silenced=silenced,
                 extra={"summary": result.summary, "data": result.data},
                 raw={"check": check, "result": result.to_dict()},
                 status_code=int(result.status))
