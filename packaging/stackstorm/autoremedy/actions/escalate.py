from lib.actions import AutoremedyAction
from lib.notify import escalation, post_json


class Escalate(AutoremedyAction):
    """Always reaches a human: the escalation webhook, else the chat webhook,
    else the action's own failure (which StackStorm's notifications surface)."""

    def run(self, reason, event, evidence=None):
        payload = escalation(reason, event, evidence or {})
        self.logger.warning(payload["summary"])
        sent_to = []
        for key in ("escalation_url", "notify_url"):
            url = self.setting(key)
            if url:
                post_json(url, payload if key == "escalation_url" else {"text": payload["summary"]},
                          verify=self.verify_tls)
                sent_to.append(key)
                break
        if event.get("source") == "zabbix" and self.setting("zabbix_url"):
            from lib.zabbix_ack import acknowledge
            eventid = (event.get("extra") or {}).get("event_id")
            acknowledge(self.setting("zabbix_url"), self.setting("zabbix_user"), self.setting("zabbix_password"),
                        eventid, f"autoremedy escalated: {reason}", verify=self.verify_tls)
            sent_to.append("zabbix")
        if not sent_to:
            return (False, {"summary": payload["summary"], "error": "no escalation_url or notify_url configured"})
        return (True, {"summary": payload["summary"], "sent_to": sent_to})
