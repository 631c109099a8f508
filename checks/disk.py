"""Disk space: bytes and inodes per mount, worst mounts first, optional time-to-full.

    $ autoremedy check disk -p / -p /var
    DISK CRITICAL: /var 96.2% used (crit >95); / 41.0% used | '/'=41.0%;85;95;0;100 ...

Thresholds are on used percent (``-w 85 -c 95`` by default, in the spirit of
sensu-plugins' check-disk-usage), on used inode percent (``-W``/``-K``), and
optionally on absolute free space (``--free-warning 5G``). ``--magic`` scales
the percent thresholds for disks larger than ``--normal-size`` the way
check_mk's "magic factor" does: a 10 TB volume at 95% still has 500 GB free.
Time-to-full comes from a small state file of earlier readings
(``<state_dir>/checks/disk.json``) and a least-squares growth rate.
"""
import os
import time

from autoremedy.contract.result import CheckError, Metric, Result, Status
from autoremedy.contract.ranges import Range
from autoremedy.contract import units

MANIFEST = {
    "name": "disk",
    "summary": "a filling disk: remove configured junk on its node",
    "check": "autoremedy.checks.disk:probe",
    "remediation": "autoremedy.remediations.disk",
    "scope": "node",
    "thresholds": ("85", "95"),
    "timeout": 10.0,
    "target_options": ("-p", "--path"),
    "order": 20,
    "sensu": [
        # Every real filesystem, for the record; the remediation pairs are per mount below.
        {"name": "autoremedy-disk",
         "args": '-w {{ .annotations.autoremedy_disk_warning | default "85" }} '
                 '-c {{ .annotations.autoremedy_disk_critical | default "95" }}',
         "classic_args": "-w :::autoremedy.disk_warning|85::: -c :::autoremedy.disk_critical|95:::",
         "subscriptions": ["autoremedy"], "hooks": []},
        {"name": "autoremedy-disk-var", "args": "-p /var", "subscriptions": ["autoremedy"],
         "hooks": ["warning", "critical"], "target": "/var"},
    ],
    "zabbix": {
        "agent_comment": "Disk space: one mount, thresholds (used %) from the template's macros. Discovery\n"
                         "lists every mount (tmpfs too, like vfs.fs.discovery); the template's\n"
                         "{$AR.DISK.FSTYPE.*} / {$AR.DISK.FSNAME.*} filters choose the watched ones.",
        "userparameters": [
            ("autoremedy.disk.discovery", "/usr/bin/autoremedy check disk --discover --all"),
            ("autoremedy.disk[*]",
             '/usr/bin/autoremedy check disk -p "$1" -w "$2" -c "$3" --format zabbix --timeout 2.5'),
        ],
    },
    "stackstorm": {
        "order": 20,
        "description": "A filling disk: remove configured junk on its node, verify, notify or escalate.",
        "status": [1, 2],
        "check_args": "-p {{ trigger.body.event.labels.autoremedy_target }}",
    },
}
NAME = MANIFEST["name"]

# Filesystems that hold no user data: kernel interfaces, RAM-backed and images.
PSEUDO = frozenset("""
    autofs binfmt_misc bpf cgroup cgroup2 configfs debugfs devpts devtmpfs efivarfs
    fusectl fuse.gvfsd-fuse fuse.lxcfs fuse.portal hugetlbfs iso9660 mqueue nsfs
    overlay proc pstore ramfs rpc_pipefs securityfs selinuxfs squashfs sysfs tmpfs
    tracefs nfsd
""".split())


def add_arguments(parser):
    parser.add_argument("-p", "--path", action="append", default=[], metavar="MOUNT",
                        help="mount point or path to check (repeatable; default: all real filesystems)")
    parser.add_argument("-t", "--include-type", action="append", default=[], metavar="FSTYPE",
                        help="only these filesystem types (repeatable; may name a pseudo type like tmpfs)")
    parser.add_argument("-x", "--exclude-type", action="append", default=[], metavar="FSTYPE",
                        help="skip these filesystem types (repeatable)")
    parser.add_argument("--all", action="store_true",
                        help="every mounted filesystem, pseudo ones (tmpfs, proc...) too: what --discover "
                             "gives a monitor that filters by type and mount point itself")
    parser.add_argument("-W", "--inode-warning", default="85", metavar="RANGE",
                        help="used inode percent warning range (default 85)")
    parser.add_argument("-K", "--inode-critical", default="95", metavar="RANGE",
                        help="used inode percent critical range (default 95)")
    parser.add_argument("--free-warning", type=units.size, metavar="SIZE",
                        help="WARNING when less than SIZE is free (e.g. 5G)")
    parser.add_argument("--free-critical", type=units.size, metavar="SIZE",
                        help="CRITICAL when less than SIZE is free")
    parser.add_argument("--magic", type=float, metavar="FACTOR",
                        help="magic factor (0.5-1.0) scaling percent thresholds for large disks")
    parser.add_argument("--normal-size", type=units.size, default=units.size("20G"), metavar="SIZE",
                        help="disk size at which thresholds apply unscaled (default 20G)")
    parser.add_argument("--ttf-warning", type=units.duration, metavar="DURATION",
                        help="WARNING when the disk will be full within DURATION at the current growth")
    parser.add_argument("--ttf-critical", type=units.duration, metavar="DURATION",
                        help="CRITICAL when the disk will be full within DURATION")
    parser.add_argument("--ttf-window", type=units.duration, default=units.duration("6h"),
                        metavar="DURATION", help="readings used for the growth rate (default 6h)")


# --- acquire -------------------------------------------------------------------

def mounts(args, partitions=None):
    """[(mountpoint, fstype)] to check, and notes about what was skipped."""
    if args.path:
        return [(path, None) for path in args.path], []
    import psutil
    parts = partitions() if partitions else psutil.disk_partitions(all=True)
    include, exclude = set(args.include_type), set(args.exclude_type)
    chosen, seen_dev = [], {}
    for part in parts:
        fstype = part.fstype
        if include:
            if fstype not in include:
                continue
        elif getattr(args, "all", False):
            # The monitor filters (the Zabbix template's {$AR.DISK.FSTYPE.*} and
            # {$AR.DISK.FSNAME.*} macros), as with Zabbix's own vfs.fs.discovery.
            if not fstype or fstype in exclude:
                continue
        elif fstype in PSEUDO or fstype in exclude or not fstype:
            continue
        # Bind mounts repeat a device: keep the shortest mount point.
        previous = seen_dev.get(part.device)
        if previous is not None and part.device.startswith("/dev/"):
            if len(part.mountpoint) < len(chosen[previous][0]):
                chosen[previous] = (part.mountpoint, fstype)
            continue
        seen_dev[part.device] = len(chosen)
        chosen.append((part.mountpoint, fstype))
    return chosen, []


def usage(path):
    """(total, used, free, inodes_total, inodes_free) like df: 'free' is what an
    unprivileged user can still write; used% = used / (used + free)."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return total, used, free, st.f_files, st.f_ffree


# --- evaluate --------------------------------------------------------------------

def magic_threshold(level, size, magic, normal):
    """check_mk's df magic factor: scale a used-% level for a disk of ``size``."""
    if not magic or size <= 0 or level is None:
        return level
    felt = size / float(normal)
    scale = (felt ** magic) / felt
    return max(0.0, min(100.0, 100.0 - (100.0 - level) * scale))


def _scaled(rng, size, args):
    if rng is None or not args.magic or rng.inside or rng.start != 0:
        return rng
    return Range(0.0, round(magic_threshold(rng.end, size, args.magic, args.normal_size), 2))


def time_to_full(state_path, mount, used, free, window, now):
    """Seconds until full at the growth rate seen over ``window``, or None.
    Records this reading. Returns (seconds or None, note or None)."""
    from autoremedy import statefile
    try:
        with statefile.updating(state_path, lock_timeout=2) as state:
            readings = [r for r in state.get(mount, []) if now - r[0] <= window]
            readings.append([now, used])
            state[mount] = readings[-64:]
    except (OSError, TimeoutError) as exc:
        return None, f"time-to-full unavailable: {getattr(exc, 'strerror', None) or exc}"
    if len(readings) < 3 or readings[-1][0] - readings[0][0] < 60:
        return None, None
    n = len(readings)
    mean_t = sum(r[0] for r in readings) / n
    mean_u = sum(r[1] for r in readings) / n
    var = sum((r[0] - mean_t) ** 2 for r in readings)
    if var == 0:
        return None, None
    slope = sum((r[0] - mean_t) * (r[1] - mean_u) for r in readings) / var
    if slope <= 0:
        return None, None
    return free / slope, None


def probe(config, args, partitions=None, usage_of=usage, clock=time.time):
    """The seam (autoremedy/contract/checkrun.py): the configuration gives the state
    directory of --ttf-* (read only then, and not at all when the environment names it)."""
    chosen, notes = mounts(args, partitions)
    if not chosen:
        raise CheckError("no filesystem to check (all excluded?)")
    inode_warn, inode_crit = Range.parse(args.inode_warning), Range.parse(args.inode_critical)
    free_warn = Range(args.free_warning) if args.free_warning else None
    free_crit = Range(args.free_critical) if args.free_critical else None
    ttf_on = args.ttf_warning or args.ttf_critical
    state_path = None
    if ttf_on:
        state_path = os.path.join(config.state_dir, "checks", "disk.json")
    now = clock()
    rows, metrics, details = [], [], list(notes)
    for mount, fstype in chosen:
        try:
            total, used, free, inodes, ifree = usage_of(mount)
        except FileNotFoundError:
            if args.path:
                rows.append(_unknown(mount, "does not exist"))
            else:
                details.append(f"{mount} vanished during the scan; skipped")
            continue
        except PermissionError:
            rows.append(_unknown(mount, "permission denied"))
            continue
        except OSError as exc:
            if args.path:
                rows.append(_unknown(mount, exc.strerror or str(exc)))
            else:
                details.append(f"{mount}: {exc.strerror or exc}; skipped")
            continue
        if total <= 0:
            details.append(f"{mount}: size 0; skipped")
            continue
        pct = round(100.0 * used / (used + free), 2) if used + free else 0.0
        mine = [Metric(mount, pct, "%", _scaled(args.warning, total, args),
                       _scaled(args.critical, total, args), 0, 100)]
        if free_warn or free_crit:
            mine.append(Metric(f"{mount} free", free, "B", free_warn, free_crit, 0, total))
        else:
            mine.append(Metric(f"{mount} used", used, "B", min=0, max=total))
        if inodes:
            ipct = round(100.0 * (inodes - ifree) / inodes, 2)
            mine.append(Metric(f"{mount} inodes", ipct, "%", inode_warn, inode_crit, 0, 100))
        if ttf_on:
            ttf, note = time_to_full(state_path, mount, used, free, args.ttf_window, now)
            if note:
                details.append(f"{mount}: {note}")
            if ttf is not None:
                warn = Range(args.ttf_warning, float("inf")) if args.ttf_warning else None
                crit = Range(args.ttf_critical, float("inf")) if args.ttf_critical else None
                mine.append(Metric(f"{mount} ttf", round(ttf), "s", warn, crit, 0))
        rows.append(_row(mount, fstype, pct, total, free, mine))
        metrics.extend(mine)
    return summarise(rows, metrics, details)


def _unknown(mount, reason):
    return {"mount": mount, "status": Status.UNKNOWN, "text": f"{mount} {reason}", "pct": -1}


def _row(mount, fstype, pct, total, free, mine):
    status, texts = Status.OK, []
    for metric in mine:
        bad = metric.violated()
        if bad is None:
            continue
        status = status.worse(metric.status)
        word = "crit" if metric.status is Status.CRITICAL else "warn"
        if metric.uom == "%" and metric.label == mount:
            texts.append(f"{pct:g}% used ({word} {bad.describe()})")
        elif metric.label.endswith(" inodes"):
            texts.append(f"inodes {metric.value:g}% used ({word} {bad.describe()})")
        elif metric.label.endswith(" free"):
            texts.append(f"{units.human_size(free)} free ({word} <{units.human_size(bad.start)})")
        elif metric.label.endswith(" ttf"):
            texts.append(f"full in {units.human_duration(metric.value)} "
                         f"({word} <{units.human_duration(bad.start)})")
    text = f"{mount} " + (", ".join(texts) if texts else f"{pct:g}% used")
    return {"mount": mount, "fstype": fstype, "status": status, "text": text, "pct": pct,
            "size": total, "free": free}


def summarise(rows, metrics, details):
    rank = {Status.CRITICAL: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.OK: 3}
    rows.sort(key=lambda r: (rank[r["status"]], -r["pct"]))
    worst = Status.OK
    for row in rows:
        worst = worst.worse(row["status"])
    bad = [r for r in rows if r["status"] is not Status.OK]
    if bad:
        summary = "; ".join(r["text"] for r in bad)
        ok = len(rows) - len(bad)
        if ok:
            summary += f"; {ok} other mount(s) OK"
    elif rows:
        summary = f"{len(rows)} mount(s) OK, fullest {rows[0]['text']}"
    else:
        summary = "no mount could be read"
        worst = Status.UNKNOWN
    data = {"mounts": [{k: (int(v) if isinstance(v, Status) else v) for k, v in r.items()}
                       for r in rows]}
    return Result(NAME, summary, status=worst, metrics=metrics, details=details, data=data)


def check(args, **probes):
    """The check outside the seam (tests with fake partitions): the configuration
    is $AUTOREMEDY_CONFIG's, read if needed."""
    from autoremedy.lazyconfig import Deferred
    return probe(Deferred(getattr(args, "config", None)), args, **probes)


def discover(config, args):
    """Zabbix LLD with the macros of Zabbix's own vfs.fs.discovery."""
    chosen, _ = mounts(args)
    return [{"{#FSNAME}": mount, "{#FSTYPE}": fstype or ""} for mount, fstype in chosen]
