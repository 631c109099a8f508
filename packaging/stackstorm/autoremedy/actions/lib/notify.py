"""Post JSON to a webhook (chat notifications, escalations). No StackStorm
imports: the actions are thin wrappers and this stays testable on its own."""


class NotifyError(Exception):
    pass


def post_json(url, payload, timeout=10.0, verify=True):
    """POST ``payload``; return the status code. Anything but 2xx raises, so the
    workflow sees a failed notification instead of a silent drop."""
    import requests
    try:
        response = requests.post(url, json=payload, timeout=timeout, verify=verify)
    except requests.RequestException as exc:
        raise NotifyError(f"{url}: {type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise NotifyError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    return response.status_code


def describe(event):
    """One line naming the event (trigger.body.event) for humans."""
    event = event or {}
    labels = event.get("labels") or {}
    parts = [labels.get("autoremedy_class") or event.get("check") or "unclassified",
             labels.get("autoremedy_target") or "", "on", event.get("host") or "?"]
    text = " ".join(p for p in parts if p)
    if event.get("id"):
        text += f" (event {event['id']})"
    return text


def chat_message(message, event):
    return {"text": f"[autoremedy] {message} - {describe(event)}"}


def escalation(reason, event, evidence):
    return {"summary": f"autoremedy escalation: {describe(event)}: {reason}", "reason": reason,
            "event": event, "evidence": evidence, "severity": "critical" if event.get("status") == 2 else "warning",
            "dedup_key": event.get("id")}
