"""Small helpers shared by the OpenStack tests (importable by name, unlike conftest)."""


def address(host):
    """Compute hosts live at 127.0.1.N: loopback, so even a real ping stays here."""
    return "127.0.1." + str(int("".join(c for c in host if c.isdigit()) or 0) % 250 + 1)


def deep_merge(base, extra):
    out = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
