"""The shared base of the pack's Python actions: configuration access and the
one way they talk to the outside (lib/notify.py, lib/zabbix_ack.py)."""
from st2common.runners.base_action import Action


class AutoremedyAction(Action):
    def setting(self, name, default=None):
        value = (self.config or {}).get(name)
        return default if value in (None, "") else value

    @property
    def verify_tls(self):
        return bool(self.setting("verify_tls", True))
