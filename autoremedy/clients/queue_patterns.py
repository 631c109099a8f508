"""Queue-name patterns that mean the same to Python and to RabbitMQ.

RabbitMQ matches policy patterns and the management API's ``name`` filter with
Erlang's ``re`` module, which is PCRE; autoremedy plans with Python's ``re``.
Two consequences, both handled here:

- **What we send to RabbitMQ is exact.** A policy applied by a remediation
  names the planned queues and nothing else: ``exact_pattern(names)`` builds
  ``^(?:a|b)$`` from escaped names, which both dialects read the same way (only
  ASCII letters, digits and ``_`` stay bare; every other character is escaped
  with a backslash, which PCRE and Python both read as "this character
  literally"). ``exact_names(pattern)`` reads such a pattern back, so the queues
  a policy governs are known without asking either regex engine.
- **What operators write is checked for the dialect gap.** ``dialect_problem``
  names a construct whose meaning differs between the two (POSIX classes,
  possessive quantifiers, ``\\Z``, Python-only escapes and flags, ``{,n}``),
  so a config check refuses it instead of letting the plan and the broker
  disagree. Operator patterns are compiled with ``re.ASCII`` (``compile``),
  so ``\\d``, ``\\w`` and ``\\s`` mean the ASCII classes PCRE gives them.

Upstream references: RabbitMQ "Policies" (patterns are regular expressions
matched by the broker), Erlang ``re`` (PCRE syntax), Python ``re``.
"""
import re

_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def escape(name):
    """``name`` as a literal in both dialects (bare alphanumerics, else ``\\c``).

    Python's re.escape is not used: it leaves some characters bare that PCRE
    might read differently in future versions, and its output changed across
    Python releases; this one is fixed and obviously literal."""
    out = []
    for ch in name:
        if ch in _BARE or ord(ch) > 0x7f:
            # Non-ASCII stays raw: a literal to Python (code points) and to
            # RabbitMQ's byte-wise PCRE (the same UTF-8 bytes); we never put a
            # quantifier after it.
            out.append(ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")       # both dialects: exactly two hex digits
        else:
            out.append("\\" + ch)
    return "".join(out)


def exact_pattern(names):
    """One anchored pattern matching exactly ``names`` (sorted, deduplicated)."""
    names = sorted(set(names))
    if not names:
        raise ValueError("an exact pattern needs at least one name")
    if len(names) == 1:
        return f"^{escape(names[0])}$"
    return "^(?:" + "|".join(escape(n) for n in names) + ")$"


def _unescape(text):
    """The literal a piece of ``exact_pattern`` stands for; None if it is not one."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in _BARE or ord(ch) > 0x7f:
            out.append(ch)
            i += 1
        elif ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x":
                m = re.match(r"\\x([0-9a-f]{2})", text[i:])
                if not m:
                    return None
                out.append(chr(int(m.group(1), 16)))
                i += m.end()
            elif nxt.isalnum():
                return None               # \d, \w ...: a class, not a literal
            else:
                out.append(nxt)
                i += 2
        else:
            return None                    # a metacharacter: not a literal name
    return "".join(out)


def exact_names(pattern):
    """The names an exact pattern matches (``^name$``, ``^(?:a|b)$`` or
    ``^(a|b)$`` made of literals), or None when the pattern is anything else."""
    if not isinstance(pattern, str) or not pattern.startswith("^") or not pattern.endswith("$"):
        return None
    body = pattern[1:-1]
    if body.endswith("\\"):                # "^a\$" is "a$" literally, unanchored
        return None
    for opener in ("(?:", "("):
        if body.startswith(opener) and body.endswith(")"):
            inner = body[len(opener):-1]
            break
    else:
        inner = body
        if "|" in inner:
            return None                    # ^a|b$ is (^a)|(b$): not exact
    names = []
    for part in _split_alternatives(inner):
        name = _unescape(part)
        if name is None or name == "":
            return None
        names.append(name)
    return names


def _split_alternatives(text):
    parts, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if text[i] == "|":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    parts.append("".join(cur))
    return parts


def compile(pattern):
    """An operator's pattern as the plan uses it (ASCII classes, like PCRE)."""
    return re.compile(pattern, re.ASCII)


_POSIX = re.compile(r"\[([:=.])[^\]]*\1\]")


def dialect_problem(pattern):
    """None when ``pattern`` means the same to Python (``re.ASCII``) and PCRE as
    far as queue names go; else a short reason naming the construct."""
    i, in_class, class_start = 0, False, 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return "a trailing backslash"
            nxt = pattern[i + 1]
            if nxt in "Zz":
                return (f"\\{nxt}: Python's \\Z is PCRE's \\z and PCRE's \\Z also matches before a "
                        "final newline; use $")
            if nxt in "uUN":
                return f"\\{nxt}: a Python-only escape (PCRE rejects it)"
            if nxt == "v":
                return "\\v: a vertical tab to Python, any vertical whitespace to PCRE"
            i += 2
            continue
        if in_class:
            if ch == "[" and _POSIX.match(pattern, i):
                return (f"POSIX class {_POSIX.match(pattern, i).group(0)}: PCRE reads a character "
                        "class, Python literal characters")
            if ch == "[":
                return "'[' inside a character class: a nested set in Python's future syntax; escape it"
            if pattern.startswith(("--", "&&", "~~", "||"), i):
                return f"{pattern[i:i + 2]!r} inside a character class: a set operation in Python's future syntax"
            if ch == "]" and i > class_start:
                in_class = False
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            class_start = i             # a ']' right here is a literal
            if i < n and pattern[i] == "]":
                i += 1
            continue
        if ch in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            return (f"possessive quantifier {ch}+: PCRE supports it, Python only from 3.11 "
                    "(a config valid on one host and not another)")
        if ch == "{" and pattern.startswith("{,", i):
            return "{,n}: Python reads {0,n}, PCRE (before 10.43) literal characters"
        if ch == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2:]
            if rest[:1] == ">":
                return "atomic group (?>...): PCRE supports it, Python only from 3.11"
            m = re.match(r"[a-zA-Z]+", rest)
            if m:
                flags = m.group(0)
                bad = sorted(set(flags) & set("aLu"))
                if bad:
                    return f"inline flag (?{bad[0]}): Python only, RabbitMQ's PCRE rejects it"
                bad = sorted(set(flags) - set("imsx"))
                if bad and not rest.startswith("P"):
                    return f"inline flag (?{bad[0]}): PCRE only, Python rejects or reads it differently"
        i += 1
    return None


def validate(pattern):
    """Raise ValueError with one line when ``pattern`` is not a regex both
    dialects read alike; return the compiled (Python) pattern otherwise."""
    problem = dialect_problem(pattern)       # first: Python warns about some of these
    if problem:
        raise ValueError(f"means something else to RabbitMQ (PCRE) than to Python: {problem}")
    try:
        return compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from None
