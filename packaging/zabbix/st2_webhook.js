// autoremedy: Zabbix webhook media type that forwards a problem or its recovery
// to StackStorm's webhook, in the body shape `autoremedy handle zabbix` posts
// (so the autoremedy pack's rules match either path).
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

function param(name, fallback) {
    var v = p[name];
    // An unresolved macro arrives as its own text, e.g. "{EVENT.RECOVERY.ID}".
    if (v === undefined || v === null || v === '' || /^\{[A-Z.$#]+[A-Z0-9._]*\}$/.test(v)) {
        if (fallback !== undefined) {
            return fallback;
        }
        throw 'autoremedy webhook: parameter ' + name + ' is not set';
    }
    return v;
}

function tagMap(text) {
    var out = {};
    var list = [];
    try {
        list = JSON.parse(text || '[]');
    } catch (e) {
        list = [];
    }
    for (var i = 0; i < list.length; i++) {
        out[list[i].tag] = list[i].value;
    }
    return out;
}

var tags = tagMap(param('EventTags', '[]'));
var recovery = param('EventValue', '1') === '0';
var eventId = param('EventID');
var recoveryId = param('RecoveryEventID', '');
var severity = parseInt(param('Severity', ''), 10);
// Our triggers carry the check's own verdict in the autoremedy_status tag; other
// triggers are mapped from the severity the way `autoremedy handle zabbix` does.
var status = recovery ? 0 : parseInt(tags.autoremedy_status || '', 10);
if (isNaN(status)) {
    status = (isNaN(severity) || severity >= 3) ? 2 : 1;
}
var names = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'];
var extra = {event_id: eventId, item_key: param('ItemKey', ''), item_value: param('ItemValue', '')};
if (recoveryId) {
    extra.recovery_id = recoveryId;
}
if (!isNaN(severity)) {
    extra.severity = severity;
}
// trigger.body = {event, raw, autoremedy}: the document the handlers post
// (autoremedy/stackstorm.py body()), so one set of rules serves both paths.
var body = {
    event: {
        id: 'zabbix-' + eventId + (recovery && recoveryId ? '-r' + recoveryId : ''),
        source: 'zabbix',
        host: param('Host'),
        check: param('TriggerName'),
        status: status,
        state: names[status] || 'UNKNOWN',
        status_code: status,
        output: param('ItemValue', ''),
        occurrences: null,
        action: recovery ? 'resolve' : 'problem',
        silenced: false,
        history: [],
        started: null,
        timestamp: Math.floor(Date.now() / 1000),
        labels: tags,
        namespace: null,
        extra: extra
    },
    raw: {
        eventid: eventId,
        recovery_eventid: recoveryId,
        trigger: param('TriggerName'),
        subject: param('Subject', ''),
        message: param('Message', '')
    },
    autoremedy: {
        via: 'zabbix-webhook',
        replayed: false,
        remediated_locally: false,
        local: [],
        escalated: false
    }
};

var url = param('URL').replace(/\/+$/, '') + '/api/v1/webhooks/' + param('Webhook', 'autoremedy');
var req = new HttpRequest();
req.addHeader('Content-Type: application/json');
req.addHeader('St2-Api-Key: ' + param('ApiKey'));
// The Zabbix event id is the trace tag: replays and retries of one event share it.
req.addHeader('St2-Trace-Tag: ' + body.event.id);
var resp = req.post(url, JSON.stringify(body));
var code = req.getStatus();
if (code < 200 || code > 299) {
    Zabbix.log(3, '[autoremedy webhook] StackStorm answered HTTP ' + code + ': ' + resp);
    throw 'StackStorm answered HTTP ' + code + (code >= 400 && code < 500 ? ' (configuration error)' : '') + ': ' + resp;
}
return 'OK';
