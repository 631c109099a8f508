from lib.actions import AutoremedyAction
from lib.zabbix_ack import acknowledge


class ZabbixAck(AutoremedyAction):
    def run(self, eventid, message, close=False):
        url = self.setting("zabbix_url")
        if not url:
            return (False, {"error": "zabbix_url is not configured"})
        ids = acknowledge(url, self.setting("zabbix_user"), self.setting("zabbix_password"), eventid, message,
                          close=close, verify=self.verify_tls)
        return (True, {"eventids": ids})
