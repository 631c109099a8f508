from lib.actions import AutoremedyAction
from lib.notify import chat_message, post_json


class Notify(AutoremedyAction):
    def run(self, message, event=None):
        payload = chat_message(message, event or {})
        self.logger.info(payload["text"])
        url = self.setting("notify_url")
        if not url:
            return (True, {"sent": False, "text": payload["text"]})
        post_json(url, payload, verify=self.verify_tls)
        return (True, {"sent": True, "text": payload["text"]})
