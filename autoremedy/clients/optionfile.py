"""MySQL / MariaDB option files (``my.cnf``), read the way the client and server read them.

Used for the credentials of autoremedy's own connections (autoremedy/clients/mysql.py) and for a
Galera node's server settings (autoremedy/clients/galera.py). The rules follow the manual
(https://mariadb.com/kb/en/configuring-mariadb-with-option-files/) and the parser in
mysys/my_default.c.
"""
import glob
import os

from autoremedy.contract.result import CheckError


def read(path, groups, _depth=0):
    """The options of ``groups`` (later groups win) from a MySQL option file.

    Follows the client's rules: ``#``/``;`` comments, quoted values, flags without
    a value, ``_`` and ``-`` equivalent, the ``loose-`` prefix, ``!include`` and
    ``!includedir`` (``*.cnf``). PyMySQL's own reader handles one group and
    breaks on flags such as ``ssl-verify-server-cert``, hence this one.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise CheckError(f"option file {path}: no such file") from None
    except PermissionError:
        raise CheckError(f"option file {path}: permission denied") from None
    except OSError as exc:
        raise CheckError(f"option file {path}: {exc.strerror}") from None
    per_group = {g: {} for g in groups}
    current = None
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include"):
            directive, _, target = line.partition(" ")
            target = os.path.join(os.path.dirname(path), target.strip())
            if _depth < 8:
                files = sorted(glob.glob(os.path.join(target, "*.cnf"))) if directive == "!includedir" else [target]
                for name in files:
                    for group, values in _read_groups(name, groups, _depth + 1).items():
                        per_group[group].update(values)
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip().lower()
            continue
        if current not in per_group:
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower().replace("_", "-")
        if key.startswith("loose-"):
            key = key[len("loose-"):]
        per_group[current][key] = _value(value) if sep else None
    merged = {}
    for group in groups:
        merged.update(per_group[group])
    return merged


def _read_groups(path, groups, depth):
    return {g: read(path, [g], depth) for g in groups}


def _value(text):
    """A value as the server's option parser reads it (mysys my_default.c): an end
    comment outside quotes dropped, one pair of enclosing quotes stripped, then the
    escapes \\b \\t \\n \\r \\\\ \\s processed (others are kept as written)."""
    text = _strip_comment(text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return _unescape(text)


def _strip_comment(text):
    quote = None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return text[:i]
    return text


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", "\\": "\\", "s": " "}


def _unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i:i + 2]))
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def flag(value):
    """An option-file flag: present without a value, or 1/ON/TRUE."""
    return value is None or str(value).strip().lower() in ("1", "on", "true", "yes")
