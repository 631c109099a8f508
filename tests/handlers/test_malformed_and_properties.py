"""No input loses an event (issue 13, item 3): a corpus of malformed inputs kept in
tests/fixtures/malformed/, and property-based tests (hypothesis, fixed seed,
bounded budget) over the three event parsers and the range parser.

The property: a parser returns an Event that can be posted (strict JSON, no
Infinity or NaN anywhere, names and ids bounded) or raises MalformedEvent with
a one-line reason. Nothing else, ever.
"""
import base64
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from autoremedy.pipeline.event import MAX_NAME, Event, MalformedEvent, decode_json
from autoremedy.contract.ranges import Range, RangeError
from autoremedy.pipeline.sources.sensu import from_sensu
from autoremedy.pipeline.sources.zabbix import FIELDS, from_zabbix, from_zabbix_params

from handlerkit import FIXTURES, fixture_text

CORPUS = os.path.join(FIXTURES, "malformed", "corpus.jsonl")


def corpus():
    with open(CORPUS, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_the_corpus_is_large_enough_and_covers_every_handler():
    entries = corpus()
    assert len(entries) >= 200
    assert {e["handler"] for e in entries} == {"sensu", "webhook", "argv"}
    assert len({e["name"] for e in entries}) == len(entries)


@pytest.fixture
def handler_env(monkeypatch, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "autoremedy.yaml"
    config.write_text("{}\n")
    for name in [k for k in os.environ if k.startswith("AUTOREMEDY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AUTOREMEDY_STATE_DIR", str(state))
    monkeypatch.setenv("AUTOREMEDY_CONFIG", str(config))
    return state


@pytest.mark.parametrize("entry", corpus(), ids=lambda e: e["name"])
def test_every_malformed_input_is_refused_in_one_line_and_kept(entry, handler_env, capsys):
    """Through the handler's own main(): exit 2, one line naming the reason, the
    exact input kept as a dead letter, nothing spooled."""
    from autoremedy.handlers import sensu, zabbix
    stdin = io.BytesIO(base64.b64decode(entry["stdin"])) if "stdin" in entry else None
    if entry["handler"] == "sensu":
        code = sensu.main([], stdin=stdin)
    elif entry["handler"] == "webhook":
        code = zabbix.main(["--webhook"], stdin=stdin)
    else:
        code = zabbix.main(entry["argv"], stdin=io.BytesIO(b""))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and entry["reason"] in lines[0], (entry["reason"], err)
    assert "internal error" not in err and "Traceback" not in err
    folder = handler_env / "deadletter"
    [raw] = [n for n in os.listdir(folder) if n.endswith(".raw")]
    kept = (folder / raw).read_bytes()
    if "stdin" in entry:
        assert kept == base64.b64decode(entry["stdin"])[:4 << 20]
    else:
        meta = json.loads((folder / raw.replace(".raw", ".json")).read_text())
        assert kept == b"\0".join(os.fsencode(a) for a in entry["argv"][-3:]) \
            or meta.get("argv") == entry["argv"]
    assert not (handler_env / "spool").exists() or not os.listdir(handler_env / "spool")


# --- properties ------------------------------------------------------------------------------
# derandomize: the same examples on every run (a fixed seed); max_examples: the budget.
BUDGET = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.sampled_from([0, 1, 2, 3, 127, -1, 2 ** 31, 2 ** 63, 1617050501, 10 ** 4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "²", "٣", "0", "2", "inf", "nan", "1e999", "{EVENT.ID}", "*UNKNOWN*",
                     "\udcff", "\x00", "-1", "9" * 4301, "PROBLEM", "RESOLVED", "High", "a:b, c"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def postable(event):
    """What StackStorm receives must be strict JSON with bounded names."""
    assert isinstance(event, Event)
    json.dumps(event.to_dict(with_raw=True), allow_nan=False, default=str)
    assert 0 < len(event.host) <= MAX_NAME and 0 < len(event.check) <= MAX_NAME
    assert len(event.id) <= 200 and "\n" not in event.id and " " not in event.id
    for value in (event.started, event.timestamp):
        assert value is None or math.isfinite(value)


def refused_in_one_line(exc):
    assert isinstance(exc, MalformedEvent) and "\n" not in str(exc) and str(exc)


def mutate(base, paths, data):
    event = json.loads(json.dumps(base))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = event
        parts = path.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        if isinstance(node, dict):
            if data.draw(st.booleans()):
                node[parts[-1]] = data.draw(json_values)
            else:
                node.pop(parts[-1], None)
    return event


def _paths(obj, prefix=""):
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            out.append(path)
            out.extend(_paths(value, path + "."))
    return out


GO = json.loads(fixture_text("sensu", "sensu-go-event.json"))
CLASSIC = json.loads(fixture_text("sensu", "sensu-classic-event.json"))
GO_PATHS, CLASSIC_PATHS = _paths(GO), _paths(CLASSIC)


def check_parser(parse):
    try:
        event = parse()
    except MalformedEvent as exc:
        refused_in_one_line(exc)
    else:
        postable(event)


@BUDGET
@given(st.data())
def test_sensu_parser_is_total_on_mutated_events(data):
    base, paths = data.draw(st.sampled_from([(GO, GO_PATHS), (CLASSIC, CLASSIC_PATHS)]))
    check_parser(lambda: from_sensu(mutate(base, paths, data)))


@BUDGET
@given(json_values)
def test_sensu_parser_is_total_on_anything(value):
    check_parser(lambda: from_sensu(value))


@BUDGET
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_decoding_is_total_on_bytes(data):
    try:
        value = decode_json(data, 1 << 20)
    except MalformedEvent as exc:
        refused_in_one_line(exc)
    else:
        assert isinstance(value, dict)
        json.dumps(value, allow_nan=False)


ZABBIX_NAMES = sorted({n for names in FIELDS.values() for n in names}) + [
    "event_id", "EventID", "EVENT.ID", "host_host", "host_name", "event_nseverity",
    "event_severity", "event_tags", "event_update_status", "event_value", "event_source",
    "Message", "alert_message", "field:hostname", "<'NUMBER' CUSTOMFIELD FOR EVENT.ID>"]
zabbix_params = st.dictionaries(st.sampled_from(ZABBIX_NAMES) | st.text(max_size=10), json_values,
                                max_size=12)


@BUDGET
@given(zabbix_params)
def test_zabbix_webhook_parser_is_total(params):
    check_parser(lambda: from_zabbix_params(params))


@BUDGET
@given(st.text(max_size=20), st.text(max_size=40), st.one_of(
    st.text(max_size=300),
    zabbix_params.map(lambda p: json.dumps(p, default=str)),
    zabbix_params.map(lambda p: "{\n" + "\n".join(f'"{k}": {json.dumps(v, default=str)},'
                                                  for k, v in p.items()) + "\n}"),
    zabbix_params.map(lambda p: " ".join(f"{k}={v}" for k, v in p.items()))))
def test_zabbix_alert_script_parser_is_total(sendto, subject, message):
    check_parser(lambda: from_zabbix(sendto, subject, message))


range_text = st.one_of(
    st.text(alphabet="0123456789.-+:@~eEinfaINFA \t", max_size=14),
    st.text(max_size=8),
    st.builds(lambda a, b, at: f"{'@' if at else ''}{a}:{b}",
              st.one_of(st.just(""), st.just("~"), st.floats(allow_nan=False).map(repr)),
              st.one_of(st.just(""), st.floats(allow_nan=False).map(repr)), st.booleans()),
)


@BUDGET
@given(range_text, st.floats(allow_nan=False, allow_infinity=False))
def test_range_parser_is_total_and_its_perfdata_text_is_a_plain_range(spec, value):
    try:
        rng = Range.parse(spec)
    except RangeError as exc:
        assert "\n" not in str(exc) and repr(spec) in str(exc)
        return
    if rng is None:
        assert spec == ""
        return
    text = rng.normalised()
    assert "e" not in text.lower().replace("~", "") and "inf" not in text and " " not in text
    assert Range.parse(text) == rng                       # the perfdata text means the same range
    assert rng.alerts(value) in (True, False)
