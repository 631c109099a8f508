"""Free disk space by policy: remove only what the configuration names, never user data.

Configuration::

    remediations:
      disk:
        enabled: true
        targets:
          /var:                                   # the mount point the disk check reports
            warning: 85                           # thresholds the verification uses
            critical: 95
            rules:
              - {type: rotated-logs, root: /var/log, older_than: 7d}
              - {type: tmp, root: /var/tmp, older_than: 3d}
              - {type: journal, vacuum_size: 500M}
              - {type: apt-cache}                 # also yum-cache, dnf-cache

File rules only delete regular files that are (a) under their ``root``, (b) on
the same filesystem as the root, (c) older than ``older_than`` and (d) match a
pattern (rotated-logs has a conservative default set). Symlinks are never
followed or deleted, so nothing outside the allowed roots can be reached. The
dry-run lists every file that would go.
"""
import fnmatch
import os
import stat
import time

from autoremedy import config as configmod
from autoremedy import units
from autoremedy.remediation import Remediation, Step

ROTATED = ["*.gz", "*.xz", "*.bz2", "*.zst", "*.[0-9]", "*.[0-9].log", "*.old", "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]"]
COMMANDS = {
    "apt-cache": ["apt-get", "clean"],
    "yum-cache": ["yum", "clean", "all"],
    "dnf-cache": ["dnf", "clean", "all"],
}
FILE_RULES = ("rotated-logs", "tmp", "files")
MAX_LISTED = 200


class FreeDisk(Remediation):
    name = "disk"
    scope = "node"
    schema = {
        "targets": configmod.Map({
            "warning": (int, float, str),
            "critical": (int, float, str),
            "rules": configmod.List({
                "type": str, "root": str, "older_than": configmod.Duration,
                "patterns": configmod.List(str), "vacuum_size": configmod.Size,
            }),
        }),
    }

    def resolve(self, name):
        target = super().resolve(name)
        for i, rule in enumerate(self.allowlist()[target].get("rules") or []):
            kind = rule.get("type")
            where = f"remediations.disk.targets.{target}.rules[{i}]"
            if kind in FILE_RULES:
                if not rule.get("root") or not os.path.isabs(rule["root"]):
                    raise configmod.ConfigError(f"{where}.root: an absolute directory is required")
                if "older_than" not in rule:
                    raise configmod.ConfigError(f"{where}.older_than: required for {kind} rules")
                if kind == "files" and not rule.get("patterns"):
                    raise configmod.ConfigError(f"{where}.patterns: required for 'files' rules")
            elif kind == "journal":
                if "vacuum_size" not in rule:
                    raise configmod.ConfigError(f"{where}.vacuum_size: required for journal rules")
            elif kind not in COMMANDS:
                known = ", ".join(list(FILE_RULES) + ["journal"] + list(COMMANDS))
                raise configmod.ConfigError(f"{where}.type: {kind!r} is not one of {known}")
        return target

    def probe(self, target):
        from autoremedy.cli import run_check
        entry = self.allowlist()[target]
        argv = ["-p", target, "-w", str(entry.get("warning", 85)), "-c", str(entry.get("critical", 95))]
        result, _ = run_check("disk", argv)
        return result

    def plan(self, target):
        if not self.needs_action(self.probe(target), f"how full {target} is"):
            return []
        steps = []
        for rule in self.allowlist()[target].get("rules") or []:
            kind = rule["type"]
            if kind in FILE_RULES:
                files = candidates(rule, target)
                if files:
                    total = sum(size for _, size in files)
                    steps.append(Step(
                        f"remove {len(files)} file(s), {units.human_size(total)}, under {rule['root']} "
                        f"older than {units.human_duration(rule['older_than'])}",
                        action=_remover(files, rule["root"]),
                        details=[path for path, _ in files[:MAX_LISTED]]))
            elif kind == "journal":
                size = rule["vacuum_size"]
                steps.append(Step(f"vacuum the journal to {units.human_size(size)}",
                                  ["journalctl", f"--vacuum-size={size}"], timeout=120))
            else:
                steps.append(Step(f"clean the {kind}", COMMANDS[kind], timeout=300))
        return steps

    def run(self, target, plan):
        before = _free(target)
        notes = super().run(target, plan)
        freed = _free(target) - before
        notes.append(f"freed {units.human_size(max(freed, 0))} on {target}")
        return notes

    def verify(self, target):
        return self.probe(target)

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("target", help="a mount point listed in remediations.disk.targets")


def _free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def candidates(rule, mount, now=None):
    """[(path, size)] of regular files this rule allows to delete, oldest first."""
    now = time.time() if now is None else now
    root = rule["root"]
    try:
        root_st = os.lstat(root)
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(root_st.st_mode) or not stat.S_ISDIR(root_st.st_mode):
        return []             # a symlinked root could point anywhere: refuse it
    mount_dev = os.stat(mount).st_dev
    if root_st.st_dev != mount_dev:
        return []             # the root is not on the full filesystem: deleting frees nothing there
    patterns = rule.get("patterns") or (ROTATED if rule["type"] == "rotated-logs" else ["*"])
    cutoff = now - rule["older_than"]
    found = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        # Never descend into another filesystem mounted under the root.
        dirs[:] = [d for d in dirs if _same_dev_dir(os.path.join(directory, d), mount_dev)]
        for name in files:
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            path = os.path.join(directory, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_dev != mount_dev or st.st_mtime > cutoff:
                continue
            found.append((path, st.st_size, st.st_mtime))
    found.sort(key=lambda f: f[2])
    return [(path, size) for path, size, _ in found]


def _same_dev_dir(path, dev):
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_dev == dev


def _remover(files, root):
    real_root = os.path.realpath(root)

    def remove():
        removed, freed, errors = 0, 0, 0
        for path, size in files:
            # Re-check at deletion time: the tree may have changed since planning.
            if os.path.commonpath([os.path.realpath(os.path.dirname(path)), real_root]) != real_root:
                errors += 1
                continue
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                os.unlink(path)
                removed += 1
                freed += size
            except FileNotFoundError:
                continue
            except OSError:
                errors += 1
        text = f"removed {removed} file(s), {units.human_size(freed)}"
        return text + (f", {errors} refused or failed" if errors else "")
    return remove


REMEDIATION = FreeDisk
