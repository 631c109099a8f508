"""Free disk space by policy: remove only what the configuration names, never user data.

Configuration (docs/disk.md has every rule and option)::

    remediations:
      disk:
        enabled: true
        targets:
          /var:                                   # the mount point the disk check reports
            warning: 85                           # thresholds the verification uses
            critical: 95
            target: 80                            # stop deleting once below (default: warning)
            rules:
              - {type: rotated-logs, root: /var/log, older_than: 7d}
              - {type: tmp, root: /var/tmp, older_than: 3d}
              - {type: journal, vacuum_size: 500M}
              - {type: apt-cache}                 # also yum-cache, dnf-cache
              - {type: deleted-open, truncate: false}   # report (truncate: true empties them)

File rules delete regular files under their ``root``, never in another mount
under it (bind mounts included), older than ``older_than`` by the newest of
mtime and ctime, matching a pattern; oldest first, stopping once the disk is
below ``target``. Files whose deletion would free nothing (another hard link
outside the plan, held open by a process) are kept and listed as such. The plan
lists every file (escaped, with its size, allocated bytes and what deleting it
frees); the outcome gives what was removed, what it freed by allocated blocks,
and the filesystem's own used bytes before and after. Host-wide rules (journal,
package caches) run only when their data is on the target's filesystem.
Deleted-but-open files on the filesystem are always reported with the processes
holding them; they are truncated only by a ``deleted-open`` rule with ``truncate: true``.
"""
import fnmatch
import os
import stat
import time

from autoremedy import config as configmod
from autoremedy.contract import units
from autoremedy.contract.noharm import Invariant, Reach
from autoremedy.contract.remediation import Remediation, RemediationError, Step
from autoremedy.remediations import _disk_files as files
from autoremedy.remediations import _mounts

COMMANDS = {
    "apt-cache": ["apt-get", "clean"],
    "yum-cache": ["yum", "clean", "all"],
    "dnf-cache": ["dnf", "clean", "all"],
    "journal": None,            # journalctl --vacuum-size=SIZE
}
# Where each host-wide rule's data lives: the rule runs only when it is on the target.
DATA = {
    "apt-cache": ["/var/cache/apt/archives"],
    "yum-cache": ["/var/cache/yum"],
    "dnf-cache": ["/var/cache/dnf"],
    "journal": ["/var/log/journal", "/run/log/journal"],
}
FILE_RULES = ("rotated-logs", "tmp", "files")
RULES = FILE_RULES + tuple(COMMANDS) + ("deleted-open",)
WORLD_LIMIT = 500000


class FileStep(Step):
    """Deleting files: the plan's JSON lists every one of them (``files``)."""

    def __init__(self, description, action, candidates):
        super().__init__(description, action=action, details=[c.line() for c in candidates])
        self.candidates = candidates

    def to_dict(self):
        out = super().to_dict()
        out["files"] = [c.to_dict() for c in self.candidates]
        return out


class FreeDisk(Remediation):
    name = "disk"
    scope = "node"
    schema = {
        "targets": configmod.Map({
            "warning": (int, float, str),
            "critical": (int, float, str),
            "target": (int, float),
            "rules": configmod.List({
                "type": str, "root": str, "older_than": configmod.Duration,
                "patterns": configmod.List(str), "vacuum_size": configmod.Size,
                "truncate": bool,
            }),
        }),
    }

    def resolve(self, name):
        target = super().resolve(name)
        entry = self.allowlist()[target]
        if not os.path.isabs(target):
            raise configmod.ConfigError(f"remediations.disk.targets.{target}: a mount point "
                                        "(an absolute path) is required")
        stop = entry.get("target")
        if stop is not None and not 0 < stop <= 100:
            raise configmod.ConfigError(f"remediations.disk.targets.{target}.target: "
                                        "a used percent between 0 and 100")
        for i, rule in enumerate(entry.get("rules") or []):
            kind = rule.get("type")
            where = f"remediations.disk.targets.{target}.rules[{i}]"
            if kind in FILE_RULES:
                root = rule.get("root")
                if not root or not os.path.isabs(root):
                    raise configmod.ConfigError(f"{where}.root: an absolute directory is required")
                if os.path.normpath(root) == "/":
                    raise configmod.ConfigError(f"{where}.root: / is not a root a rule may clean")
                if "older_than" not in rule:
                    raise configmod.ConfigError(f"{where}.older_than: required for {kind} rules")
                if kind == "files" and not rule.get("patterns"):
                    raise configmod.ConfigError(f"{where}.patterns: required for 'files' rules")
            elif kind == "journal":
                if "vacuum_size" not in rule:
                    raise configmod.ConfigError(f"{where}.vacuum_size: required for journal rules")
            elif kind not in RULES:
                raise configmod.ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(RULES)}")
        return target

    def probe(self, target):
        """The disk check on this mount with its thresholds, under this configuration."""
        from autoremedy.contract import checkrun
        entry = self.allowlist()[target]
        argv = ["-p", target, "-w", str(entry.get("warning", 85)), "-c", str(entry.get("critical", 95))]
        result, _ = checkrun.run("disk", argv, self.config)
        return result

    def stop_at(self, target):
        """Used percent below which deletion stops."""
        entry = self.allowlist()[target]
        stop = entry.get("target")
        if stop is None:
            try:
                stop = float(entry.get("warning", 85))
            except (TypeError, ValueError):
                stop = 85.0
        return float(stop)

    def candidates(self, rule, target):
        """[Candidate] of one file rule, and notes (a seam for the harness test)."""
        return files.walk(rule, target, time.time())

    def unlink(self, root, cand):
        """Delete one planned file (through directory descriptors, on the root's mount)."""
        files.unlink(root, cand)

    def plan(self, target):
        if not self.needs_action(self.probe(target), f"how full {target} is"):
            return []
        rules = self.allowlist()[target].get("rules") or []
        dev = os.stat(target).st_dev
        holders, deleted = files.open_files(dev)
        stop = self.stop_at(target)
        steps, found = [], []
        for rule in rules:
            kind = rule["type"]
            if kind in FILE_RULES:
                cands, notes = self.candidates(rule, target)
                files.account(cands, holders)
                found.extend(cands)
                if cands or notes:
                    steps.append(self._file_step(target, rule, cands, notes, stop))
            elif kind in COMMANDS:
                steps.append(self._command_step(target, rule, dev))
        truncate = [r for r in rules if r["type"] == "deleted-open" and r.get("truncate")]
        if deleted:
            steps.append(self._deleted_step(deleted, truncate))
        self._deleted = deleted
        if not any(getattr(step, "frees", False) for step in steps):
            steps.append(self._nothing_step(target, deleted))
        return steps

    @staticmethod
    def _nothing_step(target, deleted):
        """The disk is full and no rule can free anything: escalate, saying why."""
        why = f"nothing the rules may delete on {target}"
        if deleted:
            why += ("; held by deleted open files: " +
                    "; ".join(d.line().replace("\t", " ") for d in deleted[:5]))

        def refuse():
            raise RemediationError(why)
        return Step("escalate: " + why, action=refuse)

    def _file_step(self, target, rule, cands, notes, stop):
        gone = [c for c in cands if not c.keep]
        kept = len(cands) - len(gone)
        text = (f"remove up to {len(gone)} file(s) under {rule['root']} older than "
                f"{units.human_duration(rule['older_than'])} (newest of mtime/ctime), oldest "
                f"first, until below {stop:g}% used: "
                f"{units.human_size(sum(c.size for c in gone))} in file sizes, frees "
                f"{units.human_size(sum(c.frees for c in gone))} of allocated blocks")
        if kept:
            text += f"; {kept} kept (deleting them would free nothing)"
        if notes:
            text += "; " + "; ".join(notes)
        root = os.path.normpath(rule["root"])

        def remove():
            return self._remove(target, root, gone, stop)
        step = FileStep(text, remove, cands)
        step.paths = [c.path for c in gone]
        step.frees = bool(gone)
        return step

    def _remove(self, target, root, gone, stop):
        removed = size = freed = 0
        errors = []
        left = len(gone)
        for cand in gone:
            if used_percent(target) < stop:
                break
            left -= 1
            try:
                self.unlink(root, cand)
            except files.Gone as why:
                errors.append(f"{files.escape(cand.path)}: {why}")
                continue
            except OSError as exc:
                errors.append(f"{files.escape(cand.path)}: {exc.strerror or exc}")
                continue
            removed += 1
            size += cand.size
            freed += cand.frees
        else:
            left = 0
        self._reported = getattr(self, "_reported", 0) + freed
        text = (f"removed {removed} file(s), {units.human_size(size)} in file sizes, "
                f"freed {units.human_size(freed)} of allocated blocks")
        if left:
            text += f"; stopped below {stop:g}% used with {left} file(s) left"
        if errors:
            text += f"; {len(errors)} left alone: " + "; ".join(errors[:10])
        return text

    def _command_step(self, target, rule, dev):
        kind = rule["type"]
        here = [d for d in DATA[kind] if _on_device(d, dev)]
        if not here:
            text = (f"skip {kind}: its data ({', '.join(DATA[kind])}) is not on the filesystem "
                    f"of {target}")
            step = Step(text, action=lambda: "skipped: not on this filesystem")
            step.data_dirs = []
            return step
        if kind == "journal":
            size = rule["vacuum_size"]
            step = Step(f"vacuum the journal to {units.human_size(size)}",
                        ["journalctl", f"--vacuum-size={size}"], timeout=120)
        else:
            step = Step(f"clean the {kind}", COMMANDS[kind], timeout=300)
        step.data_dirs = here
        step.frees = True
        return step

    def _deleted_step(self, deleted, truncate):
        total = sum(d.allocated for d in deleted)
        chosen = []
        for rule in truncate:
            patterns = rule.get("patterns") or ["*"]
            chosen += [d for d in deleted if d not in chosen and
                       any(fnmatch.fnmatch(os.path.basename(d.path), p) for p in patterns)]
        if chosen:
            text = (f"truncate {len(chosen)} of {len(deleted)} deleted-but-open file(s) "
                    f"({units.human_size(sum(d.allocated for d in chosen))}) through "
                    "/proc/PID/fd (rule deleted-open, truncate: true)")
        else:
            text = (f"report {len(deleted)} deleted-but-open file(s) holding "
                    f"{units.human_size(total)} (freed only when their holders close them or "
                    "restart; a deleted-open rule with truncate: true empties them)")

        def act():
            done = []
            for entry in chosen:
                done.append(_truncate(entry))
            report = "; ".join(d.line().replace("\t", " ") for d in deleted)
            return ("; ".join(done) + "; " if done else "") + "held: " + report
        step = Step(text, action=act, details=[d.line() for d in deleted])
        step.frees = bool(chosen)
        return step

    def run(self, target, plan):
        self._reported = 0
        before = used_bytes(target)
        notes = []
        stop = self.stop_at(target)
        for step in plan:
            if step.argv is not None and used_percent(target) < stop:
                notes.append(f"{step.description}: not run, already below {stop:g}% used")
                continue
            notes.append(self.run_step(step))
        after = used_bytes(target)
        notes.append(f"df {target}: used {units.human_size(before)} -> {units.human_size(after)}"
                     f", freed {units.human_size(max(before - after, 0))} (files removed by "
                     f"rules: {units.human_size(self._reported)} of allocated blocks)")
        return notes

    def verify(self, target):
        result = self.probe(target)
        deleted = getattr(self, "_deleted", None) or []
        if result.status.name != "OK" and deleted:
            dev = os.stat(target).st_dev
            _, still = files.open_files(dev)
            if still:
                result.summary += ("; held by deleted open files: " + "; ".join(
                    d.line().replace("\t", " ") for d in still[:5]))
        return result

    # -- the no-harm declarations ----------------------------------------------
    def roots(self, target, plan=()):
        out = [os.path.normpath(rule["root"]) for rule in self.allowlist()[target].get("rules") or []
               if rule.get("type") in FILE_RULES]
        for step in plan:
            out.extend(getattr(step, "data_dirs", []))
        return out

    def reach(self, target, plan):
        """The run may delete the files its plan names — and only those of them
        that lie under a rule's root on the root's own mount (read again here
        from the mount table, independently of the walk that made the plan) —
        and anything under the data directories of the host-wide rules it runs.
        The world is every entry under those roots, across mounts: a file
        reached through a bind mount, or anything else, that changes is harm."""
        roots = self.roots(target)
        table = _mounts.table()
        names = [path for step in plan for path in getattr(step, "paths", [])
                 if _contained(path, roots, table)]
        data = [d for step in plan for d in getattr(step, "data_dirs", [])]
        if data:
            names.extend(world(data))
        watched = roots + data
        return [Reach("file", names, read=lambda: world(watched),
                      how="os.walk of " + ", ".join(watched) + " (across mounts, no symlink "
                          "followed): type, device and inode of every entry, each symlink's text",
                      appear=True)]

    def invariants(self, target, plan):
        # The target's own mount and every mount under the roots — not every
        # mount under the target: for "/" that would be the whole host.
        roots = self.roots(target, plan)
        return [Invariant("the target's mount and the mounts at or under the roots",
                          "/proc/self/mountinfo", lambda: mounts_under(roots, exact=[target]))]

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a mount point listed in remediations.disk.targets")


def used_bytes(path):
    """Used bytes as df counts them (blocks - free blocks)."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def used_percent(path):
    """df's Use%: used / (used + available to unprivileged users)."""
    st = os.statvfs(path)
    used = st.f_blocks - st.f_bfree
    total = used + st.f_bavail
    return 100.0 * used / total if total else 0.0


def _on_device(path, dev):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_dev == dev


def _truncate(entry):
    """Empty a deleted-but-open file through its holder's descriptor, after
    checking it is still that inode and still deleted."""
    for pid, _comm, fd in entry.holders:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(handle)
            if (st.st_dev, st.st_ino) != (entry.dev, entry.ino) or st.st_nlink != 0 \
                    or not stat.S_ISREG(st.st_mode):
                return f"{files.escape(entry.path)}: no longer the deleted file, left alone"
            os.ftruncate(handle, 0)
            return f"truncated {files.escape(entry.path)} (deleted, held by pid {pid})"
        finally:
            os.close(handle)
    return f"{files.escape(entry.path)}: no holder left"


def world(roots):
    """{path: state} of every entry under ``roots``, mounts included (what the
    walk must not enter is exactly what must be watched)."""
    out = {}
    for root in roots:
        if not os.path.isdir(root) or os.path.islink(root):
            continue
        for directory, dirs, names in os.walk(root, followlinks=False):
            for name in dirs + names:
                path = os.path.join(directory, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    out[path] = "symlink -> " + os.readlink(path)
                else:
                    kind = "dir" if stat.S_ISDIR(st.st_mode) else \
                        "file" if stat.S_ISREG(st.st_mode) else "other"
                    out[path] = f"{kind} {st.st_dev}:{st.st_ino}"
                if len(out) > WORLD_LIMIT:
                    raise RuntimeError(f"more than {WORLD_LIMIT} entries under the roots")
    return out


def mounts_under(paths, exact=()):
    table = _mounts.table()
    exact = {os.path.normpath(p) for p in exact}
    return sorted(m.to_list() for m in table
                  if m.point in exact or any(_mounts.under(m.point, p) for p in paths))


def _contained(path, roots, table):
    """``path`` is under one of ``roots`` and on that root's own mount."""
    for root in roots:
        if _mounts.under(path, root):
            here, there = _mounts.mount_of(path, table), _mounts.mount_of(root, table)
            if here is not None and there is not None and here.id == there.id:
                return True
    return False


REMEDIATION = FreeDisk
