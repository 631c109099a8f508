"""Group log lines into signatures (templates), per service, and tell what is new.

A signature is what a human reads first: "Instance failed to spawn: <*>" seen 9
times between 03:10 and 03:12 on nova-compute, never in the hour before. The
grouping is the Drain algorithm through ``drain3`` (logpai's maintained
implementation, PyPI), with one setting for every log format and one addition:

- values that are never wording (request ids, UUIDs, IPv4 addresses, numbers)
  are replaced by placeholders first, so each distinct message is mined once;
- Drain (similarity 0.4, depth 5, digit tokens as parameters) clusters the
  messages that share most tokens;
- then a cluster is split by the positions where Drain put a wildcard but the
  lines carry only two or three different *words* (no digits): "Received
  disconnect from <*>: 11: Bye Bye [preauth]" and "…: disconnected by user" are
  two messages, not one message with three variables. Real variables (users,
  paths, ids) take many values or carry digits and stay wildcards.

Measured on loghub's public 2k-line samples (docs/collect.md): mean grouping
accuracy 0.982 over HDFS, Hadoop, Spark, Zookeeper, OpenSSH and Apache, every
system at or above the published Drain figure; plain drain3 with its defaults
gives 0.927.

Only the message is mined: the header (time, pid, level, logger, oslo.log's
request context, ``[instance: …]``) is cut first, so two services' lines or two
requests of the same message fall into one signature.
"""
import hashlib
import re

SIMILARITY = 0.4
DEPTH = 5
MAX_WORD_VALUES = 3
_WORD = re.compile(r"^[A-Za-z][A-Za-z_;:\[\]().,'-]*$")

# The header of each log format, up to the message. oslo.log: "<time> <pid> <LEVEL>
# <logger> [<context>] [instance: <uuid>] <message>".
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_HEADERS = {
    "oslo": re.compile(r"^\S+ \S+ \d+ [A-Z]+ \S+ (?:\[[^\]]*\] )?(?:\[instance: " + _UUID + r"\] )?"),
    "rabbitmq": re.compile(r"^\S+ (?:\S+ )?\[\w+\] (?:<[\d.]+> )?"),
    "iso8601": re.compile(r"^\S+ (?:\d\d:\d\d\S* )?"),
    "syslog": re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ [^:\s]+(?:\[\d+\])?: "),
}


def message_of(line, fmt="oslo"):
    """The message part of a log line (the line itself when the format is unknown)."""
    header = _HEADERS.get(fmt) if isinstance(fmt, str) else None
    if header is None:
        return line
    match = header.match(line)
    return line[match.end():] if match else line


# Values that are never part of a message's wording, replaced before mining so
# that repeated messages are mined once (a window repeats the same few hundred
# messages thousands of times): request ids, UUIDs, IPv4 addresses (with a
# port), hexadecimal and decimal numbers standing alone.
_VALUES = re.compile(
    r"(?P<req>\breq-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)"
    r"|(?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)"
    r"|(?P<ip>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.]))"
    r"|(?P<hex>(?<![\w])0x[0-9a-fA-F]+(?![\w]))"
    r"|(?P<num>(?<![\w.-])[-+]?\d+(?:\.\d+)?(?![\w.-]))")
_PLACEHOLDER = {"req": "<REQ>", "uuid": "<UUID>", "ip": "<IP>", "hex": "<HEX>", "num": "<NUM>"}


def normalize(message):
    return _VALUES.sub(lambda m: _PLACEHOLDER[m.lastgroup], message)


class Miner:
    """One Drain tree; ``add`` every line, then ``groups`` names each line's
    signature. Each distinct normalised message is mined once."""

    def __init__(self):
        from drain3 import TemplateMiner
        from drain3.template_miner_config import TemplateMinerConfig
        cfg = TemplateMinerConfig()
        cfg.drain_sim_th = SIMILARITY
        cfg.drain_depth = DEPTH
        cfg.parametrize_numeric_tokens = True
        cfg.masking_instructions = []        # normalize() did the masking, once per line
        cfg.profiling_enabled = False
        self.miner = TemplateMiner(config=cfg)
        self.normal = {}                     # message -> normalised message
        self.mined = set()                   # normalised messages given to Drain

    def _norm(self, message):
        norm = self.normal.get(message)
        if norm is None:
            norm = self.normal[message] = normalize(message)
        return norm

    def add(self, message):
        norm = self._norm(message)
        if norm not in self.mined:
            self.mined.add(norm)
            self.miner.add_log_message(norm)

    def groups(self, messages):
        """[(signature key, template)] for each message, after the word split.
        Call once every line has been added (templates are final then)."""
        norms = [self._norm(m) for m in messages]
        keyed = self._group(list(dict.fromkeys(norms)))
        return [keyed[n] for n in norms]

    def _group(self, distinct):
        drain = self.miner.drain
        by_cluster = {}
        for norm in distinct:
            cluster = self.miner.match(norm, full_search_strategy="fallback")
            by_cluster.setdefault(cluster.cluster_id if cluster is not None else None, []).append(norm)
        out = {}
        for cid, norms in by_cluster.items():
            if cid is None:
                out.update({n: (_digest(n), n) for n in norms})
                continue
            template = list(drain.id_to_cluster[cid].log_template_tokens)
            tokens = [drain.get_content_as_tokens(n) for n in norms]
            split = _word_positions(template, tokens)
            for norm, toks in zip(norms, tokens):
                words = list(template)
                for pos in split:
                    words[pos] = toks[pos] if pos < len(toks) else ""
                text = " ".join(words)
                out[norm] = (_digest(text), text)
        return out


def _continues(blocks, service, ts, message):
    """True for the lines of a multi-line message after its first: oslo.log
    repeats the header (same time) on every line of a traceback, and lines
    without a header of their own carry their parent's time. A line at the
    block's time continues it when it opens a traceback, is indented, or
    follows a traceback (the exception line that closes it)."""
    block = blocks.get(service)
    same = block is not None and abs(ts - block[0]) < 0.002
    trace = message.startswith("Traceback (most recent call last)")
    if same and (trace or message[:1].isspace() or block[1]):
        block[1] = block[1] or trace
        return True
    blocks[service] = [ts, trace]
    return False


def _word_positions(template, tokens):
    positions = []
    for pos, token in enumerate(template):
        if token != "<*>":
            continue
        values = {t[pos] if pos < len(t) else "" for t in tokens}
        if 2 <= len(values) <= MAX_WORD_VALUES and all(_WORD.match(v) for v in values):
            positions.append(pos)
    return positions


def _digest(text):
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:12]


ERROR_LEVELS = ("CRITICAL", "FATAL", "ERROR", "TRACE")


def signatures(window, baseline=(), warnings=False):
    """Signatures of the window's lines, per service, marked new when no line
    of the baseline (the time before the incident) had them.

    ``window`` and ``baseline``: iterables of (service, ts, line, level, fmt).
    Returns [{service, id, template, count, errors, level, first, last, new,
    example}], error signatures (and warnings when asked) first, new ones first.
    """
    per_service = {}
    for part, rows in (("baseline", baseline), ("window", window)):
        blocks = {}
        for service, ts, line, level, fmt in rows:
            message = message_of(line, fmt)
            if _continues(blocks, service, ts, message):
                continue          # a traceback's frames belong to the error that printed them
            per_service.setdefault(service, {"baseline": [], "window": []})[part].append(
                (ts, line, level, message))
    out = []
    serious = ERROR_LEVELS + (("WARNING",) if warnings else ())
    for service, parts in per_service.items():
        if not parts["window"]:
            continue
        miner = Miner()
        for part in ("baseline", "window"):
            for _, _, _, message in parts[part]:
                miner.add(message)
        seen = {key for key, _ in miner.groups([m for _, _, _, m in parts["baseline"]])}
        rows = {}
        keys = miner.groups([m for _, _, _, m in parts["window"]])
        for (ts, line, level, _), (key, template) in zip(parts["window"], keys):
            row = rows.get(key)
            if row is None:
                row = rows[key] = {"service": service, "id": f"{service}:{key}", "template": template,
                                   "count": 0, "errors": 0, "level": level, "first": ts, "last": ts,
                                   "new": key not in seen, "example": line[:500]}
            row["count"] += 1
            if level in serious:
                row["errors"] += 1
                if row["level"] not in serious:
                    row["level"], row["example"] = level, line[:500]
            row["first"], row["last"] = min(row["first"], ts), max(row["last"], ts)
        out.extend(rows.values())
    out.sort(key=lambda r: (not r["errors"], not r["new"], -r["errors"], -r["count"], r["first"]))
    return out
