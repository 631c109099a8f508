"""The rabbitmq-node check's memory of a healthy node: the definitions baseline
(an export of /api/definitions) compared with what the node has now, and the
ledger of the queues this node holds, which a reset refusal quotes
(checks/rabbitmq_node.py; remediations/rabbitmq_node.py reads both)."""
import json
import os
import time

from autoremedy.checks._rabbitmq_local import run_cli, safe_name as _safe
from autoremedy.contract.result import CheckError

# --- definitions ------------------------------------------------------------------------

def load_baseline(path):
    """The last good definitions export, or None when there is none yet."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckError(f"definitions baseline {path} unreadable: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or "vhosts" not in data:
        raise CheckError(f"definitions baseline {path} is not a definitions export")
    return data


def save_baseline(path, definitions):
    """Atomic write, 0600: an export carries password hashes."""
    from autoremedy import statefile
    statefile.write_atomic(path, json.dumps(definitions, sort_keys=True).encode(), mode=0o600)


def compare(baseline, vhosts, users, queues, lost_pct):
    """What vanished since the baseline: (critical reasons, notes)."""
    reasons, notes = [], []
    gone_vhosts = sorted({v["name"] for v in baseline.get("vhosts", [])} - set(vhosts))
    gone_users = [] if users is None else sorted({u["name"] for u in baseline.get("users", [])} - set(users))
    if gone_vhosts:
        reasons.append("vhosts " + ", ".join(gone_vhosts[:5]) + _more(gone_vhosts))
    if gone_users:
        reasons.append("users " + ", ".join(gone_users[:5]) + _more(gone_users))
    durable = sum(1 for q in baseline.get("queues", []) if q.get("durable", True))
    if queues is not None and durable:
        lost = durable - queues
        if lost > 0 and lost >= max(1.0, durable * lost_pct / 100.0):
            reasons.append(f"queues ({queues} left of {durable} durable in the baseline)")
        elif lost > 0:
            notes.append(f"{lost} fewer queues than the {durable} durable ones in the baseline")
    return reasons, notes


def _more(items):
    return f" (+{len(items) - 5} more)" if len(items) > 5 else ""


def definitions_via_cli(settings, runner=None):
    """(vhosts, users, queues) from one ``rabbitmqctl export_definitions -``: works
    when the API user vanished with the data, and costs one CLI start (~0.6 s)."""
    from autoremedy.contract import execute
    try:
        done = run_cli(settings, "rabbitmqctl", "export_definitions", "-", runner=runner, timeout=60)
    except execute.CommandError as exc:
        raise CheckError(f"rabbitmqctl export_definitions: {exc}") from None
    if done.returncode != 0:
        raise CheckError(f"rabbitmqctl export_definitions: exit {done.returncode}: {done.brief()}")
    try:
        data = json.loads(done.stdout)
        return ([v["name"] for v in data.get("vhosts", [])], [u["name"] for u in data.get("users", [])],
                len(data.get("queues", [])))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckError("rabbitmqctl export_definitions: unexpected output "
                         f"{done.stdout[:60]!r}") from None


QUEUE_COLUMNS = ("vhost", "name", "type", "node", "members", "online", "messages", "durable", "state")
# The queue ledger is refreshed at most this often (one listing: 0.34 s for 5,000 queues in
# the reference measurement), and on every run while a member is down.
LEDGER_EVERY = 60.0


def probe_queues(api, settings, findings, args):
    """Every queue of the cluster in one listing — including those whose home
    node is down (``state: down``): ``/api/overview`` leaves them out of its
    totals (measured), and counting from it made a healthy peer of a dead node
    look as if its definitions had vanished. Returns the number of durable
    queues, and keeps the ledger of the queues this node holds (below)."""
    from autoremedy.clients.rabbitmq import ApiError
    try:
        rows = api.queues(columns=QUEUE_COLUMNS, totals_only=True)
    except ApiError as exc:
        findings.details.append(f"queues not listed: {exc}")
        return None
    if not args.cluster:
        save_ledger(settings, findings.node, rows, findings)
    return sum(1 for row in rows if isinstance(row, dict) and row.get("durable", True))


def ledger_path(settings, node):
    return os.path.join(settings.state_dir, "rabbitmq", f"{_safe(node)}.queues.json")


def save_ledger(settings, node, rows, findings, clock=time.time):
    """The queues this node holds (classic queues homed here, quorum and stream
    queues with a replica here) and their message counts at this reading: what a
    reset of this node would put at risk. A node that cannot boot cannot be
    asked, so the remediation names these last readings in its refusal."""
    from autoremedy import statefile
    now = round(clock(), 3)
    earlier = {(q.get("vhost"), q.get("name")): q for q in load_ledger(settings, node).get("queues", [])}
    held = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        members = row.get("members") or []
        if row.get("node") == node or node in members:
            entry = {"vhost": row.get("vhost"), "name": row.get("name"), "type": row.get("type"),
                     "home": row.get("node"), "members": members, "messages": row.get("messages"),
                     "at": now}
            seen = earlier.get((entry["vhost"], entry["name"]))
            if entry["messages"] is None and seen and seen.get("messages") is not None:
                entry = seen          # its home is down: the reading from before stays, with its time
            held.append(entry)
    try:
        statefile.save(ledger_path(settings, node), {"node": node, "at": now, "queues": held})
    except OSError as exc:
        findings.details.append(f"queue ledger not saved: {exc.strerror}")


def ledger_age(settings, node):
    try:
        return time.time() - os.stat(ledger_path(settings, node)).st_mtime
    except OSError:
        return float("inf")


def load_ledger(settings, node):
    """The last readings saved by ``save_ledger`` ({} when none)."""
    from autoremedy import statefile
    data = statefile.load(ledger_path(settings, node), {}) or {}
    return data if isinstance(data, dict) and data.get("node") == node else {}


def vanished(baseline, vhosts, users, queues):
    """What the definitions comparison found gone, for the remediation to tell
    a loss of the node's database (vhosts or users gone) from a count."""
    return {"vhosts": sorted({v["name"] for v in baseline.get("vhosts", [])} - set(vhosts)),
            "users": [] if users is None else sorted({u["name"] for u in baseline.get("users", [])}
                                                      - set(users)),
            "durable_queues": queues}


def probe_definitions(api, settings, findings, args, queues, auth_error=None, runner=None):
    """Compare with the baseline; refresh the baseline while all is well. ``api``
    is None when it cannot be used: the definitions come from rabbitmqctl."""
    path = settings.baseline_path
    baseline = load_baseline(path)
    if args.accept_definitions:
        if api is None:
            raise CheckError("--accept-definitions needs the management API")
        export(api, path, findings, f"live definitions saved as the baseline {path}")
        return
    if api is not None:
        vhosts = [v["name"] for v in api.get("vhosts", columns="name")]
        users = listed_users(api, findings)
    else:
        vhosts, users, queues = definitions_via_cli(settings, runner)
    if baseline is None:
        if api is not None and not findings.critical:
            export(api, path, findings, f"no definitions baseline yet: saved {path}")
        else:
            findings.details.append(f"no definitions baseline at {path} (saved once the node is healthy)")
    else:
        reasons, notes = compare(baseline, vhosts, users, queues, args.queues_lost)
        findings.details.extend(notes)
        if reasons:
            findings.data["vanished"] = vanished(baseline, vhosts, users, queues)
            findings.crit("definitions_lost", f"{findings.node} running but definitions vanished: "
                          + "; ".join(reasons))
            return
        age = time.time() - os.stat(path).st_mtime
        if api is not None and not notes and not findings.critical and age > settings.baseline_refresh:
            export(api, path, findings, None)
    if auth_error is not None:
        # Nothing vanished that the baseline knows of: the credentials are just wrong.
        where = "exists" if settings.user in users else "does not exist on the node"
        findings.unknown(f"{auth_error} (user {settings.user!r} {where})")


# The same credentials just passed /api/overview and /api/nodes, so a 401 or 403 on
# /api/users or /api/definitions means "not an administrator" (3.10 answers 401
# {"error":"not_authorised","reason":"Not administrator user"} to a monitoring user).

def listed_users(api, findings):
    """User names, or None when this API user may not list them (only
    administrators list users; the monitoring tag lists vhosts and queues)."""
    from autoremedy.clients.rabbitmq import ApiAuthError
    try:
        return [u["name"] for u in api.get("users", columns="name")]
    except ApiAuthError as exc:
        findings.details.append(f"users not compared: user {api.user!r} may not list them "
                                f"(HTTP {exc.status}: not an administrator)")
        return None


def export(api, path, findings, note):
    """Save /api/definitions as the baseline; without the right to export, say
    so: without a baseline, lost definitions go unseen."""
    from autoremedy.clients.rabbitmq import ApiAuthError
    try:
        save_baseline(path, api.definitions())
    except ApiAuthError as exc:
        findings.warn(f"cannot export the definitions baseline: user {api.user!r} is not an "
                      f"administrator (HTTP {exc.status}); tag it, or use --no-baseline")
        return
    if note:
        findings.details.append(note)
