"""The pieces a replication plan is made of: a step's stable identity and a repair's scope."""


def keyed(step, *key):
    """A step with a stable identity (what it does to what), to tell whether the
    plan made again under the server lock is still the same plan."""
    step.key = key
    return step


class Scope:
    """What one connection's repair could affect, for the comparison and the
    declarations: named tables, whole databases, the binlog range replayed,
    downstream replicas [(Server, connection)]."""

    def __init__(self, connection, label, since=None, tables=(), databases=None, downstream=()):
        self.connection, self.label = connection, label
        self.since, self.tables = since, set(tables)
        self.databases, self.downstream = databases, list(downstream)

    def describe(self):
        parts = []
        if self.databases:
            parts.append(f"every table of {', '.join(self.databases)}")
        if self.tables:
            parts.append(", ".join(f"{d}.{t}" for d, t in sorted(self.tables)))
        if self.since:
            parts.append(f"the tables of the transactions replayed from {self.since[0]}:{self.since[1]}")
        return "; ".join(parts) or "nothing"
