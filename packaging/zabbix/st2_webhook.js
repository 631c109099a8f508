// autoremedy: Zabbix webhook media type that forwards a problem, its recovery or
// an update of it (acknowledged, commented, severity changed, closed) to
// StackStorm's webhook, in the very body `autoremedy handle zabbix` posts for the
// same alert (autoremedy/sources/zabbix.py builds the event, autoremedy/route.py
// document() the body): one set of rules serves both media types, and
// tests/handlers/test_zabbix_same_body.py compares the two for a problem, its
// recovery and an update. A change to one is a change to both.
//
// Zabbix 6.0 passes the media type's parameters as the JSON string `value`
// (https://www.zabbix.com/documentation/6.0/en/manual/config/notifications/media/webhook).
// `return 'OK'` is success; `throw` fails the alert and
// Zabbix retries it (maxattempts). Unlike the alert-script media type this path
// has no spool and no local fallback: when StackStorm stays down past the
// retries the alert is lost. Prefer the alert script where that matters.
//
// StackStorm answers 202 with the body echoed; 4xx is a configuration error
// (reported in the alert's error, retrying does not help); 5xx or no answer means
// unreachable (https://docs.stackstorm.com/webhooks.html; error codes from StackStorm/st2
// st2api/st2api/controllers/v1/webhooks.py and st2common/st2common/router.py).
var p = JSON.parse(value);

// A macro the server could not resolve here arrives as its own text
// ("{EVENT.RECOVERY.ID}" in a problem); "*UNKNOWN*" is an unknown value. Both
// are absent, as in autoremedy/sources/zabbix.py (_absent).
var MACRO = /^\s*\{[$#?]?[A-Za-z0-9_.]+(\.[^{}\s]+)?\}\s*$/;

function present(v) {
    return !(v === undefined || v === null || (typeof v === 'string' &&
        (v.trim() === '' || MACRO.test(v) || v.trim() === '*UNKNOWN*')));
}

function param(name, fallback) {
    var v = p[name];
    if (!present(v)) {
        if (fallback !== undefined) {
            return fallback;
        }
        throw 'autoremedy webhook: parameter ' + name + ' is not set';
    }
    return String(v);
}

// {EVENT.TAGSJSON} -> labels: the first 64 tags, names cut at 255, values at 1024.
function tagMap(text) {
    var out = {};
    var list = [];
    var n = 0;
    try {
        list = JSON.parse(text || '[]');
    } catch (e) {
        list = [];
    }
    for (var i = 0; i < list.length && n < 64; i++) {
        var item = list[i];
        if (item && typeof item.tag === 'string' && item.tag !== '') {
            var tag = item.tag.substring(0, 255);
            if (!(tag in out)) {
                n++;
            }
            out[tag] = (item.value === undefined || item.value === null ? '' : String(item.value)).substring(0, 1024);
        }
    }
    return out;
}

var SEVERITY = {'not classified': 0, 'information': 1, 'warning': 2, 'average': 3, 'high': 4, 'disaster': 5};

function severityOf(text) {
    var t = String(text).trim().toLowerCase();
    if (/^-?[0-9]{1,12}$/.test(t)) {
        var n = parseInt(t, 10);
        return n >= 0 ? Math.min(n, 5) : null;
    }
    return t in SEVERITY ? SEVERITY[t] : null;
}

// '2024.01.31 03:12:45' ({EVENT.DATE} {EVENT.TIME}) -> epoch seconds, local time
// of the server (as time.mktime reads it in the handler on the same server).
function clockOf(text) {
    var m = /^([0-9]{4})[.-]([0-9]{2})[.-]([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2}):([0-9]{2}))?$/.exec(String(text).trim());
    if (!m) {
        return null;
    }
    var d = new Date(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
    return isNaN(d.getTime()) ? null : d.getTime() / 1000;
}

var NUMBER = /^[0-9]{1,20}$/;
var eventId = param('EventID').trim();
if (!NUMBER.test(eventId)) {
    throw 'autoremedy webhook: EventID must be a Zabbix event number';
}
var recoveryId = param('RecoveryEventID', '').trim();
var source = parseInt(param('EventSource', '0'), 10);
if (!(source >= 0 && source <= 4)) {
    source = 0;
}
var tags = tagMap(param('EventTags', '[]'));
var value_ = param('EventValue', '').trim();
var statusText = param('EventStatus', '').trim().toUpperCase();
var subject = param('Subject', '');
var resolved = value_ === '0' || value_ === '1' ? value_ === '0' :
    (statusText === 'PROBLEM' || statusText === 'RESOLVED' || statusText === 'OK') ? statusText !== 'PROBLEM' :
        /^(RESOLVED|OK|RECOVERY)/.test(subject.trim().toUpperCase());
var updateStatus = param('UpdateStatus', '').trim();
var updating = updateStatus === '0' || updateStatus === '1' ? updateStatus === '1' :
    param('UpdateAction', '').trim() !== '';
var level = severityOf(param('Severity', ''));
var names = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'];
var status, action;
if (source !== 0) {
    action = 'notice';
    status = resolved ? 0 : 3;
} else if (resolved && !updating) {
    status = 0;
    action = 'resolve';
} else {
    // Triggers of the autoremedy template carry the check's own verdict in the
    // autoremedy_status tag; any other trigger is judged by its severity.
    var verdict = String(tags.autoremedy_status === undefined ? '' : tags.autoremedy_status).trim();
    if (resolved) {
        status = 0;
    } else if (verdict === '1' || verdict === '2' || verdict === '3') {
        status = parseInt(verdict, 10);
    } else {
        status = (level === null || level >= 3) ? 2 : 1;
    }
    action = updating ? 'update' : 'problem';
}
if (status === 0 && 'autoremedy_status' in tags) {
    tags.autoremedy_status = '0';     // an OK event must not claim the problem's verdict
}

var host = param('Host', '').trim();
if (!host && source !== 0) {
    host = 'zabbix';
}
if (!host) {
    throw 'autoremedy webhook: parameter Host is not set';
}
var check = param('TriggerName', '').trim() || subject.trim() || param('ItemKey', '').trim();
if (!check) {
    throw 'autoremedy webhook: parameter TriggerName is not set';
}

var id = 'zabbix-' + eventId;
if (action === 'resolve' && NUMBER.test(recoveryId)) {
    id += '-r' + recoveryId;
} else if (action === 'update') {
    // Each update of one problem is an event of its own (a later one must not
    // overwrite an earlier one in the handler's spool): the same hash.
    id += '-u' + sha256(['UpdateDate', 'UpdateTime', 'UpdateAction', 'UpdateMessage', 'UpdateUser',
        'UpdateNSeverity', 'AckStatus'].map(function (k) { return param(k, ''); })
        .join(String.fromCharCode(0))).substring(0, 12);
}

// extra: the same keys, in the same conditions, as the handler's.
var extra = {};
var EXTRA = [['trigger_id', 'TriggerID'], ['item_key', 'ItemKey'], ['item_value', 'ItemValue'],
    ['event_id', 'EventID'], ['recovery_id', 'RecoveryEventID'], ['update_action', 'UpdateAction'],
    ['update_message', 'UpdateMessage'], ['update_user', 'UpdateUser'], ['update_date', 'UpdateDate'],
    ['update_time', 'UpdateTime'], ['ack', 'AckStatus'], ['sendto', 'SendTo'], ['subject', 'Subject']];
// The update's fields are in the action's update message only (action.yaml).
var UPDATE_ONLY = {UpdateAction: 1, UpdateMessage: 1, UpdateUser: 1, UpdateDate: 1, UpdateTime: 1, AckStatus: 1};
for (var i = 0; i < EXTRA.length; i++) {
    if (action !== 'update' && EXTRA[i][1] in UPDATE_ONLY) {
        continue;
    }
    var text = param(EXTRA[i][1], '');
    if (text.trim() !== '') {
        extra[EXTRA[i][0]] = text.substring(0, 1024);
    }
}
if (source === 0) {
    extra.incident_id = 'zabbix-' + eventId;     // the problem's id, on its recovery and updates too
} else {
    extra.event_source = ['trigger', 'discovery', 'autoregistration', 'internal', 'service'][source];
}
if (level !== null) {
    extra.severity = level;
}
// A recovery's time is its own; a problem's and an update's, the problem's start.
var started = clockOf(action === 'resolve' ? param('RecoveryTime', param('EventTime', '')) : param('EventTime', ''));
var output = [param('ItemValue', ''), param('UpdateMessage', ''), subject]
    .map(function (t) { return t.trim(); }).filter(function (t) { return t !== ''; })[0] || '';

var body = {
    event: {
        id: id,
        source: 'zabbix',
        host: host.substring(0, 255),
        check: check.substring(0, 255),
        status: status,
        state: names[status],
        status_code: status,
        output: output.substring(0, 32 * 1024),
        occurrences: null,
        action: action,
        silenced: false,
        history: [],
        started: started,
        timestamp: Date.now() / 1000,
        labels: tags,
        namespace: null,
        extra: extra
    },
    // What the alert script receives: {ALERT.SENDTO}, {ALERT.SUBJECT}, {ALERT.MESSAGE}.
    raw: {
        sendto: param('SendTo', ''),
        subject: subject,
        message: param('Message', '')
    },
    // The handler's marks. Nothing is spooled here, and Zabbix does not tell a
    // webhook which of its attempts this is: spooled_at and attempt are null.
    autoremedy: {
        version: param('Version', null),
        handler_host: param('HandlerHost', null),
        spooled_at: null,
        attempt: null,
        replayed: false,
        remediated_locally: false,
        local: [],
        escalated: false,
        escalation: null
    }
};

var webhook = param('Webhook', 'autoremedy').replace(/^\/+|\/+$/g, '');
var url = param('URL').replace(/\/+$/, '');
// As autoremedy/stackstorm.py: a URL ending in /v1 is st2api itself.
url += (/\/v1$/.test(url) ? '/webhooks/' : '/api/v1/webhooks/') + webhook;
// The generic `st2` webhook takes {trigger, payload} (https://docs.stackstorm.com/webhooks.html).
var payload = webhook === 'st2' ? {trigger: 'autoremedy.event', payload: body} : body;
var req = new HttpRequest();
req.addHeader('Content-Type: application/json');
req.addHeader('St2-Api-Key: ' + param('ApiKey'));
// The event id is the trace tag, as the handler sends it.
req.addHeader('St2-Trace-Tag: ' + body.event.id);
var resp = req.post(url, JSON.stringify(payload));
var code = req.getStatus();
if (code < 200 || code > 299) {
    Zabbix.log(3, '[autoremedy webhook] StackStorm answered HTTP ' + code + ': ' + resp);
    throw 'StackStorm answered HTTP ' + code + (code >= 400 && code < 500 ? ' (configuration error)' : '') + ': ' + resp;
}
return 'OK';
