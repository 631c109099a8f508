"""`autoremedy check disk` on real (tmpfs) filesystems, plus the edge cases in-process."""
import json
import os
from collections import namedtuple
from types import SimpleNamespace

import pytest

from autoremedy.checks import disk
from autoremedy.contract.ranges import Range
from autoremedy.contract.result import Status

from nodekit import fill

MiB = 1024 * 1024


@pytest.mark.integration
def test_full_tmpfs_is_critical_with_perfdata(run_cli, tmpfs):
    mount = tmpfs("8m")
    fill(mount, int(7.7 * MiB))
    ran = run_cli("check", "disk", "-p", mount)
    assert ran.returncode == 2, ran
    head, perf = ran.stdout.strip().split(" | ")
    assert head.startswith(f"DISK CRITICAL: {mount} 96.")
    assert head.endswith("% used (crit >95)")
    assert perf.startswith(f"'{mount}'=96.")
    assert f"%;85;95;0;100 '{mount} used'=" in perf and f"'{mount} inodes'=" in perf


@pytest.mark.integration
def test_worst_mount_first_and_ok_ones_counted(run_cli, tmpfs):
    calm, warm, hot = tmpfs("8m"), tmpfs("8m"), tmpfs("8m")
    fill(warm, int(7.0 * MiB))
    fill(hot, int(7.8 * MiB))
    ran = run_cli("check", "disk", "-p", calm, "-p", warm, "-p", hot)
    assert ran.returncode == 2
    summary = ran.stdout.split(" | ")[0]
    assert summary.index(hot) < summary.index(warm)
    assert "(warn >85)" in summary and summary.endswith("1 other mount(s) OK")


@pytest.mark.integration
def test_absolute_free_space_and_inode_thresholds(run_cli, tmpfs):
    mount = tmpfs("8m", inodes=64)
    fill(mount, 6 * MiB)
    ran = run_cli("check", "disk", "-p", mount, "-w", "99", "-c", "99", "--free-warning", "3M", "--free-critical", "1M")
    assert ran.returncode == 1 and "free (warn <3.0MiB)" in ran.stdout, ran
    for i in range(60):
        open(os.path.join(mount, f"f{i}"), "w").close()
    ran = run_cli("check", "disk", "-p", mount, "-w", "99", "-c", "99")
    assert ran.returncode == 2 and "inodes 9" in ran.stdout and "(crit >95)" in ran.stdout, ran


@pytest.mark.integration
def test_pseudo_filesystems_are_skipped_unless_asked_for(run_cli, tmpfs):
    mount = tmpfs("8m")
    default = json.loads(run_cli("check", "disk", "--discover").stdout)
    assert all(row["{#FSTYPE}"] not in ("tmpfs", "proc", "sysfs") for row in default)
    asked = json.loads(run_cli("check", "disk", "--discover", "-t", "tmpfs").stdout)
    assert {"{#FSNAME}": mount, "{#FSTYPE}": "tmpfs"} in asked
    # --all: every mount with its type, for a monitor that filters itself (the
    # Zabbix template's {$AR.DISK.FSTYPE.*} / {$AR.DISK.FSNAME.*} macros).
    everything = json.loads(run_cli("check", "disk", "--discover", "--all").stdout)
    assert {"{#FSNAME}": mount, "{#FSTYPE}": "tmpfs"} in everything
    assert {row["{#FSNAME}"] for row in default} < {row["{#FSNAME}"] for row in everything}


@pytest.mark.integration
def test_missing_path_is_unknown_not_critical(run_cli):
    ran = run_cli("check", "disk", "-p", "/nonexistent/mount")
    assert ran.returncode == 3
    assert ran.stdout.startswith("DISK UNKNOWN: /nonexistent/mount does not exist")


@pytest.mark.integration
def test_bad_sizes_and_ranges_are_unknown(run_cli):
    assert "invalid size value" in run_cli("check", "disk", "--free-warning", "lots").stdout
    ran = run_cli("check", "disk", "-W", "x")
    assert ran.returncode == 3 and "invalid range 'x'" in ran.stdout


# --- in-process: things a real machine will not do on demand ------------------------

Part = namedtuple("Part", "device mountpoint fstype opts")


def args(**kw):
    base = dict(path=[], include_type=[], exclude_type=[], warning=Range.parse("85"),
                critical=Range.parse("95"), inode_warning="85", inode_critical="95",
                free_warning=None, free_critical=None, magic=None, normal_size=20 * 1024 ** 3,
                ttf_warning=None, ttf_critical=None, ttf_window=6 * 3600)
    base.update(kw)
    return SimpleNamespace(**base)


def fake_usage(table):
    def usage(mount):
        value = table[mount]
        if isinstance(value, Exception):
            raise value
        return value
    return usage


def test_a_mount_that_vanishes_mid_scan_is_skipped_with_a_note():
    parts = lambda: [Part("/dev/sda1", "/", "ext4", ""), Part("/dev/sdb1", "/mnt/usb", "vfat", "")]
    usage = fake_usage({"/": (100, 50, 50, 10, 5), "/mnt/usb": FileNotFoundError(2, "gone")})
    result = disk.check(args(), partitions=parts, usage_of=usage)
    assert result.status is Status.OK
    assert result.details == ["/mnt/usb vanished during the scan; skipped"]
    assert result.summary == "1 mount(s) OK, fullest / 50% used"


def test_bind_mounts_are_counted_once_and_pseudo_types_skipped():
    parts = lambda: [Part("/dev/sda1", "/", "ext4", ""), Part("/dev/sda1", "/srv/bind", "ext4", ""),
                     Part("proc", "/proc", "proc", ""), Part("tmpfs", "/run", "tmpfs", "")]
    chosen, _ = disk.mounts(args(), parts)
    assert chosen == [("/", "ext4")]


def test_permission_denied_on_a_mount_is_unknown():
    parts = lambda: [Part("/dev/sda1", "/", "ext4", ""), Part("/dev/sdc1", "/secret", "ext4", "")]
    usage = fake_usage({"/": (100, 96, 4, 0, 0), "/secret": PermissionError(13, "denied")})
    result = disk.check(args(), partitions=parts, usage_of=usage)
    assert result.status is Status.CRITICAL      # UNKNOWN never masks a CRITICAL
    assert result.summary == "/ 96% used (crit >95); /secret permission denied"


def test_magic_factor_relaxes_thresholds_for_large_disks():
    # check_mk's example: 85% on a disk 100x the normal size with magic 0.8 -> ~94%.
    assert round(disk.magic_threshold(85, 2000, 0.8, 20), 1) == 94.0
    assert disk.magic_threshold(85, 20, 0.8, 20) == 85
    two_tb = 2 * 1024 ** 4
    parts = lambda: [Part("/dev/sda1", "/data", "xfs", "")]
    usage = fake_usage({"/data": (two_tb, int(two_tb * 0.90), int(two_tb * 0.10), 0, 0)})
    plain = disk.check(args(), partitions=parts, usage_of=usage)
    magic = disk.check(args(magic=0.8), partitions=parts, usage_of=usage)
    assert plain.status is Status.WARNING and magic.status is Status.OK


def test_time_to_full_from_a_growth_series(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOREMEDY_STATE_DIR", str(tmp_path))
    parts = lambda: [Part("/dev/sda1", "/var", "ext4", "")]
    size = 1000 * MiB
    now = [1_000_000.0]
    used = [100 * MiB]

    def usage(mount):
        return size, used[0], size - used[0], 0, 0
    result = None
    for _ in range(5):          # 10 MiB per 10 minutes -> 900 MiB free lasts 900 minutes
        result = disk.check(args(ttf_warning=86400.0, ttf_critical=3600.0), partitions=parts,
                            usage_of=usage, clock=lambda: now[0])
        now[0] += 600
        used[0] += 10 * MiB
    ttf = next(m for m in result.metrics if m.label == "/var ttf")
    assert 850 * 60 < ttf.value < 900 * 60
    assert result.status is Status.WARNING and "full in 14." in result.summary
    with open(tmp_path / "checks" / "disk.json") as handle:
        assert len(json.load(handle)["/var"]) == 5
