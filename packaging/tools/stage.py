"""Stage a self-contained autoremedy prefix, and pack reproducible tarballs.

One staging step serves every package: the Sensu asset, the deb and the rpm all
carry the same tree::

    bin/autoremedy          the wrapper (packaging/bin/autoremedy)
    libexec/autoremedy      the entry script it runs
    lib/                    the bundle and its dependencies (pip install --target)

    $ python3 packaging/tools/stage.py prefix out/stage --arch amd64 --python 3.11
    $ python3 packaging/tools/stage.py tar out/stage out/autoremedy.tar.gz
    3f1c...  (the sha512 of the archive bytes)

Dependencies come as wheels for the *target* platform (``pip --platform``), so
one machine builds amd64 and arm64 alike. psutil, the only compiled dependency
on a check's path, ships abi3 wheels: one build per architecture runs on every
CPython >= 3.6 with glibc >= 2.17. PyYAML's and charset-normalizer's C
accelerators are built for one Python version (``--python``) and fall back to
their pure-Python code on any other.

The tarball is reproducible: sorted members, one fixed mtime
(``SOURCE_DATE_EPOCH``), root ownership, gzip without a timestamp. A rebuild of
the same tree gives the same sha512, so a Sensu asset definition does not change
unless the content does (Sensu Go assets reference: the agent's cache is keyed by the sha512).
"""
import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGING = os.path.dirname(HERE)
PROJECT = os.path.dirname(PACKAGING)

ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
# Pure-Python dependencies published only as source: built into a wheel here
# (platform-independent) so the --only-binary install below can take them.
SDIST_ONLY = ("drain3",)
# Newest first: pip takes the first tag a wheel matches.
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


# What setup.py builds from. The wheel is built from a copy of these: setuptools
# builds in the source tree's build/, where an interrupted or concurrent build
# (two test workers, `make asset` beside `pip install .`) leaves a stale
# bdist.*/wheel that fails the next one ("File exists: ...dist-info"), and
# build/lib keeps modules that were deleted from the tree (they would ship).
SOURCES = ("setup.py", "README.md", "autoremedy", "checks", "handlers", "remediations")


def build_wheel(project, into):
    """The bundle's own (pure-Python) wheel, built from the working tree's sources."""
    src = os.path.join(into, "src")
    os.makedirs(src)
    for name in SOURCES:
        path = os.path.join(project, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(src, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.exists(path):
            shutil.copy2(path, os.path.join(src, name))
    pip("wheel", "--no-deps", "-w", into, src)
    wheels = [f for f in os.listdir(into) if f.startswith("autoremedy-") and f.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit(f"stage: expected one autoremedy wheel in {into}, found {wheels}")
    return os.path.join(into, wheels[0])


def vendor(lib, wheel, arch, python):
    """pip install --target ``lib`` the wheel and its dependencies for arch/python."""
    machine = ARCHES[arch]
    platforms = []
    for tag in MANYLINUX:
        platforms += ["--platform", f"{tag}_{machine}"]
    local = os.path.dirname(wheel)
    for name in SDIST_ONLY:
        pip("wheel", "--no-deps", "-w", local, _requirement(name))
    # [zabbix]: pyzabbix, so `autoremedy zabbix-setup` works from a package install.
    pip("install", "--target", lib, "--no-compile", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python, *platforms, "--find-links", local, f"{wheel}[zabbix]")
    # pip --target also writes console scripts (with this build's shebang) to lib/bin.
    shutil.rmtree(os.path.join(lib, "bin"), ignore_errors=True)
    _drop_build_paths(lib)
    for directory, dirs, _ in os.walk(lib):
        if "__pycache__" in dirs:
            shutil.rmtree(os.path.join(directory, "__pycache__"))
            dirs.remove("__pycache__")


def _requirement(name):
    """The version range setup.py asks for ``name``."""
    import re
    with open(os.path.join(PROJECT, "setup.py"), encoding="utf-8") as handle:
        match = re.search(rf'"({re.escape(name)}[^"]*)"', handle.read())
    return match.group(1) if match else name


def _drop_build_paths(lib):
    """pip records where a local wheel came from (direct_url.json, a temp path):
    drop it and its RECORD line so two builds of the same tree are identical."""
    for entry in os.listdir(lib):
        if not entry.endswith(".dist-info"):
            continue
        path = os.path.join(lib, entry, "direct_url.json")
        if os.path.exists(path):
            os.unlink(path)
            record = os.path.join(lib, entry, "RECORD")
            with open(record, encoding="utf-8") as handle:
                lines = [l for l in handle if not l.startswith(f"{entry}/direct_url.json,")]
            with open(record, "w", encoding="utf-8") as handle:
                handle.writelines(lines)


def byte_compile(lib, interpreter):
    """Precompile with the interpreter that will run it. unchecked-hash .pyc files
    stay valid whatever the sources' mtimes (a tarball or a package resets them)
    and hold no timestamp, so they are reproducible too."""
    # -s: record paths relative to lib/, not this build's temp directory.
    subprocess.run([interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", "-s", lib, lib], check=True)


def interpreter_version(interpreter):
    out = subprocess.run([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def stage_prefix(dest, arch, python, compile_with=None, project=PROJECT):
    """Build bin/ libexec/ lib/ under ``dest`` (created; must not exist)."""
    if os.path.exists(dest):
        raise SystemExit(f"stage: {dest} exists; remove it first")
    os.makedirs(os.path.join(dest, "bin"))
    os.makedirs(os.path.join(dest, "libexec"))
    with tempfile.TemporaryDirectory() as tmp:
        vendor(os.path.join(dest, "lib"), build_wheel(project, tmp), arch, python)
    for sub in ("bin", "libexec"):
        target = os.path.join(dest, sub, "autoremedy")
        shutil.copyfile(os.path.join(PACKAGING, sub, "autoremedy"), target)
        os.chmod(target, 0o755 if sub == "bin" else 0o644)
    if compile_with:
        if interpreter_version(compile_with) != python:
            raise SystemExit(f"stage: {compile_with} is not Python {python}; cannot precompile")
        byte_compile(os.path.join(dest, "lib"), compile_with)
    return dest


# --- reproducible tarballs --------------------------------------------------------

def _normalise(info, mtime):
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def pack(src, out, mtime=None):
    """Write ``src``'s content (not src itself: bin/ must sit at the archive root,
    Sensu Go assets reference) to a gzipped tarball; return its sha512 hex digest."""
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) if mtime is None else mtime
    members = []
    for directory, dirs, files in os.walk(src):
        dirs.sort()
        for name in dirs + sorted(files):
            members.append(os.path.join(directory, name))
    members.sort(key=lambda p: os.path.relpath(p, src))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in members:
            info = _normalise(tar.gettarinfo(path, os.path.relpath(path, src)), mtime)
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=9) as gz:
            gz.write(raw.getvalue())
    return sha512_of(out)


def sha512_of(path):
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prefix", help="stage bin/ libexec/ lib/ into DEST")
    p.add_argument("dest")
    p.add_argument("--arch", choices=sorted(ARCHES), default="amd64")
    p.add_argument("--python", default="%d.%d" % sys.version_info[:2], help="target CPython X.Y")
    p.add_argument("--compile-with", metavar="INTERPRETER",
                   help="precompile lib/ with this interpreter (must be the target version)")
    t = sub.add_parser("tar", help="pack SRC's content into a reproducible .tar.gz; print its sha512")
    t.add_argument("src")
    t.add_argument("out")
    args = parser.parse_args(argv)
    if args.command == "prefix":
        stage_prefix(args.dest, args.arch, args.python, args.compile_with)
    else:
        print(pack(args.src, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
