"""``autoremedy zabbix-setup``: import autoremedy's template, media types and action into Zabbix 6.0.

    $ autoremedy zabbix-setup --url https://zabbix.example.net --user Admin \\
          --password-file /root/zabbix-admin.pw --st2-url https://st2.example.net \\
          --st2-api-key-file /etc/autoremedy/st2-api-key
    template autoremedy node: imported
    template autoremedy RabbitMQ: imported
    ...
    global macro {$AR.ST2.URL}: created
    media type autoremedy (alert script): created
    media type autoremedy (StackStorm webhook): created
    user autoremedy-st2: created (media: autoremedy (alert script))
    action autoremedy to StackStorm: created

With ``--via script`` (the default: the spooled path) the alert script on this
server reads the node configuration, not the macros: setup writes
``stackstorm.url`` and the API key file there (``--node-config``, default
``$AUTOREMEDY_CONFIG`` or /etc/autoremedy/autoremedy.yaml; the key root-owned,
mode 0640, group autoremedy or the alert user's) and verifies them as the alert
user (``--alert-user``, default zabbix) would read them; while an alert would
fall back for lack of configuration it fails (exit 4) and says what is missing.
With ``--via webhook`` the {$AR.ST2.*} macros must be set. ``--test`` then sends
one test alert through the chosen media type (the alert script as the alert
user, or the webhook's JavaScript through zabbix_js) and prints StackStorm's
answer (exit 5 when StackStorm did not take it).

``--node-hook`` adds the node side: a global script and an action that run
``autoremedy handle hook <class> --target <target> <check options>`` on the
problem's host (a remote command; the agents need ``AllowKey=system.run[*]``).

Idempotent: run it again after an upgrade and every object is updated in place
(found by name), never deleted and recreated: an action that is missing for a
moment matches no event (events raised within the server's CacheUpdateFrequency
window after a delete + create sent nothing: measured on Zabbix 6.0.14), and operators'
additions to the template are kept (no ``deleteMissing``).

The definitions come from a directory (``--source``; else
``$AUTOREMEDY_ZABBIX_DIR``, ``/usr/share/autoremedy/zabbix`` where the rpm/deb
install ``packaging/zabbix/``, or — run from a checkout — ``out/zabbix`` after
``make zabbix``, then ``packaging/zabbix``): ``autoremedy_template.yaml``,
``mediatypes.yaml`` (+ ``st2_webhook.js``) and ``action.yaml``. Secrets come from files or the
environment (``AUTOREMEDY_ZABBIX_PASSWORD``, ``AUTOREMEDY_ZABBIX_TOKEN``), never argv.
Exit codes: 0 done, 2 bad input, 3 Zabbix refused or could not be reached, 4 an
alert would fall back for lack of configuration, 5 the test alert did not reach
StackStorm.
"""
import os
import secrets

from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG, EXIT_NOT_WIRED, EXIT_TEST_FAILED
from autoremedy.contract.runtime import ArgumentParser, UsageError, describe, fail

DEFAULT_SOURCE = "/usr/share/autoremedy/zabbix"
USER = "autoremedy-st2"
USER_GROUP = "Zabbix administrators"
SUPER_ADMIN_ROLE = "3"
MACRO_TEXT, MACRO_SECRET = 0, 1


class SetupError(Exception):
    """Zabbix said no (or the definitions are unusable); the text says which object."""


def parser():
    p = ArgumentParser(prog="autoremedy zabbix-setup",
                       description="import autoremedy's template, media types and action into Zabbix 6.0")
    p.add_argument("--url", required=True, help="frontend URL (…/api_jsonrpc.php is appended when missing)")
    p.add_argument("--user", default="Admin", help="API user (default Admin)")
    p.add_argument("--password-file", metavar="FILE", help="file with the API user's password "
                   "(or $AUTOREMEDY_ZABBIX_PASSWORD)")
    p.add_argument("--token-file", metavar="FILE", help="file with an API token (or $AUTOREMEDY_ZABBIX_TOKEN)")
    p.add_argument("--source", metavar="DIR", help=f"definitions directory (default {DEFAULT_SOURCE})")
    p.add_argument("--st2-url", metavar="URL", help="StackStorm base URL for the webhook media type")
    p.add_argument("--st2-webhook", default="autoremedy", help="StackStorm webhook name (default autoremedy)")
    p.add_argument("--st2-api-key-file", metavar="FILE", help="StackStorm API key, stored as a secret macro")
    p.add_argument("--via", choices=("script", "webhook"), default="script",
                   help="which media type the action's user gets (default: script, the spooled path)")
    p.add_argument("--sendto", default="autoremedy", help="the user media's 'send to' ({ALERT.SENDTO})")
    p.add_argument("--node-hook", action="store_true",
                   help="also run `autoremedy handle hook` on the node for its problems (a remote command: "
                        "the agents need AllowKey=system.run[*])")
    p.add_argument("--autoremedy-bin", default="/usr/bin/autoremedy", metavar="PATH",
                   help="the command on the nodes, for --node-hook (default /usr/bin/autoremedy)")
    p.add_argument("--node-hook-sudo", action="store_true",
                   help="run the node hook as root through the packages' sudo gate "
                        "(/usr/libexec/autoremedy/remediate hook), so it can restart daemons")
    p.add_argument("--node-config", metavar="FILE",
                   help="the configuration the alert script reads (default $AUTOREMEDY_CONFIG or "
                        "/etc/autoremedy/autoremedy.yaml); --via script writes/verifies it")
    p.add_argument("--alert-user", default="zabbix", help="the user zabbix_server runs alert scripts as")
    p.add_argument("--alertscripts", metavar="DIR",
                   help="AlertScriptsPath holding autoremedy_alert, for --test (default: from "
                        "/etc/zabbix/zabbix_server.conf, else /usr/lib/zabbix/alertscripts)")
    p.add_argument("--test", action="store_true",
                   help="send one test alert through the media type and print StackStorm's answer")
    p.add_argument("--no-verify", action="store_true", help="do not verify the frontend's TLS certificate")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per API call (default 30)")
    return p


def read_secret(path, env_name):
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        if not value:
            raise UsageError(f"{path} is empty")
        return value
    return os.environ.get(env_name) or None


CHECKOUT_SOURCES = ("out/zabbix", "packaging/zabbix")   # make zabbix's output, the sources


def source_dir(arg):
    """The definitions directory: what --source or $AUTOREMEDY_ZABBIX_DIR names
    (it must hold them), else the installed copy, else a checkout's."""
    named = arg or os.environ.get("AUTOREMEDY_ZABBIX_DIR")
    candidates = [named] if named else [DEFAULT_SOURCE, *CHECKOUT_SOURCES]
    for path in candidates:
        if os.path.isfile(os.path.join(path, "autoremedy_template.yaml")):
            return path
    raise UsageError(f"no autoremedy_template.yaml in {', '.join(candidates)} "
                     "(give --source DIR: the rpm/deb install it in /usr/share/autoremedy/zabbix, "
                     "make zabbix writes out/zabbix)")


def load_definitions(path):
    import yaml
    try:
        with open(os.path.join(path, "autoremedy_template.yaml"), encoding="utf-8") as handle:
            template = handle.read()
        with open(os.path.join(path, "mediatypes.yaml"), encoding="utf-8") as handle:
            mediatypes = yaml.safe_load(handle)
        for media in mediatypes:
            script = media.pop("script_file", None)
            if script:
                with open(os.path.join(path, script), encoding="utf-8") as handle:
                    media["script"] = handle.read()
        with open(os.path.join(path, "action.yaml"), encoding="utf-8") as handle:
            action = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(f"{path}: unusable definitions: {describe(exc)}") from None
    return template, mediatypes, action


# --- the API ---------------------------------------------------------------------

class Api:
    """The calls we make, through pyzabbix; every failure is a SetupError naming the call."""

    def __init__(self, url, timeout, verify):
        try:
            from pyzabbix import ZabbixAPI
        except ImportError:
            raise SetupError("pyzabbix is not installed (pip install 'autoremedy[zabbix]'; "
                             "the rpm/deb and the Sensu asset include it)") from None
        self.zapi = ZabbixAPI(url, timeout=timeout)
        self.zapi.session.verify = verify

    def login(self, user, password=None, token=None):
        try:
            if token:
                self.zapi.login(api_token=token)
            else:
                self.zapi.login(user, password)
        except Exception as exc:
            raise SetupError(f"login to {self.zapi.url} failed: {describe(exc)}") from None

    def __call__(self, method, params):
        try:
            return self.zapi.do_request(method, params)["result"]
        except Exception as exc:
            raise SetupError(f"{method}: {describe(exc)}") from None


def one(api, method, params, what):
    found = api(method, params)
    if len(found) > 1:
        raise SetupError(f"{what}: {len(found)} objects match, expected one")
    return found[0] if found else None


# --- each object ---------------------------------------------------------------------

IMPORT_RULES = {
    "groups": {"createMissing": True},
    "templates": {"createMissing": True, "updateExisting": True},
    "templateLinkage": {"createMissing": True},
    "items": {"createMissing": True, "updateExisting": True, "deleteMissing": False},
    "triggers": {"createMissing": True, "updateExisting": True, "deleteMissing": False},
    "discoveryRules": {"createMissing": True, "updateExisting": True, "deleteMissing": False},
    "valueMaps": {"createMissing": True, "updateExisting": True, "deleteMissing": False},
}


OLD_TEMPLATE = "autoremedy"     # the all-in-one template of earlier versions


def template_names(source):
    """The templates the export defines ("autoremedy node", "autoremedy RabbitMQ"...:
    one per role, packaging/zabbix/template.py): the action covers them all."""
    import yaml
    try:
        names = [t["template"] for t in yaml.safe_load(source)["zabbix_export"]["templates"]]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise SetupError(f"autoremedy_template.yaml: no templates in it ({describe(exc)})") from None
    if not names:
        raise SetupError("autoremedy_template.yaml: no templates in it")
    return names


def import_template(api, source):
    """{template name: templateid} of every template of the export, imported."""
    names = template_names(source)
    api("configuration.import", {"format": "yaml", "source": source, "rules": IMPORT_RULES})
    found = {t["host"]: t["templateid"] for t in
             api("template.get", {"filter": {"host": names}, "output": ["templateid", "host"]})}
    missing = [name for name in names if name not in found]
    if missing:
        raise SetupError(f"template {', '.join(missing)}: imported, but template.get does not find it")
    return {name: found[name] for name in names}


def old_template_note(api):
    """The all-in-one template of earlier versions, when still there: its problems
    are no longer sent (the action names the new templates), its hosts should be
    linked to the templates of their roles instead (docs/handlers.md)."""
    old = api("template.get", {"filter": {"host": [OLD_TEMPLATE]}, "output": ["templateid"],
                               "selectHosts": ["host"]})
    if not old:
        return None
    hosts = sorted(h["host"] for h in old[0].get("hosts") or [])
    return (f"template {OLD_TEMPLATE}: the all-in-one template of earlier versions is still there "
            f"(linked to {len(hosts)} host(s){': ' + ', '.join(hosts[:5]) if hosts else ''}): link the role "
            "templates instead, then unlink-and-clear and delete it")


def set_global_macro(api, macro, value, kind):
    found = one(api, "usermacro.get", {"globalmacro": True, "filter": {"macro": macro},
                                       "output": ["globalmacroid"]}, f"global macro {macro}")
    if found:
        api("usermacro.updateglobal", {"globalmacroid": found["globalmacroid"], "value": value, "type": kind})
        return "updated"
    api("usermacro.createglobal", {"macro": macro, "value": value, "type": kind})
    return "created"


def upsert_mediatype(api, media):
    found = one(api, "mediatype.get", {"filter": {"name": [media["name"]]}, "output": ["mediatypeid"]},
                f"media type {media['name']}")
    if found:
        api("mediatype.update", dict(media, mediatypeid=found["mediatypeid"]))
        return found["mediatypeid"], "updated"
    return api("mediatype.create", media)["mediatypeids"][0], "created"


def upsert_user(api, mediatypeid, sendto):
    media = [{"mediatypeid": mediatypeid, "sendto": sendto, "active": 0, "severity": 63,
              "period": "1-7,00:00-24:00"}]
    found = one(api, "user.get", {"filter": {"username": [USER]}, "output": ["userid"]}, f"user {USER}")
    if found:
        # One call with every media: user_medias is deprecated in favour of medias
        # (Zabbix 5.2+, https://support.zabbix.com/browse/ZBX-17955).
        api("user.update", {"userid": found["userid"], "medias": media})
        return found["userid"], "updated"
    group = one(api, "usergroup.get", {"filter": {"name": [USER_GROUP]}, "output": ["usrgrpid"]}, USER_GROUP)
    if group is None:
        raise SetupError(f"user group {USER_GROUP!r} does not exist")
    # Nobody logs in as this user: it only holds the media the action sends to.
    password = secrets.token_urlsafe(24) + "-Zx9"
    created = api("user.create", {"username": USER, "name": "autoremedy", "surname": "StackStorm",
                                  "passwd": password, "roleid": SUPER_ADMIN_ROLE,
                                  "usrgrps": [{"usrgrpid": group["usrgrpid"]}], "medias": media})
    return created["userids"][0], "created"


def action_params(action, templateid, mediatypeid, userid):
    def message(subject, text):
        return {"operationtype": 0, "opmessage": {"default_msg": 0, "mediatypeid": mediatypeid,
                                                  "subject": subject, "message": text},
                "opmessage_usr": [{"userid": userid}]}
    params = {k: action[k] for k in ("name", "eventsource", "status", "esc_period", "pause_suppressed")}
    # 13: host template; one condition per template, OR-ed (evaltype 0: conditions
    # of the same type are OR-ed, https://www.zabbix.com/documentation/6.0/en/manual/config/notifications/action/conditions).
    templateids = templateid if isinstance(templateid, (list, tuple)) else [templateid]
    params["filter"] = {"evaltype": 0, "conditions": [
        {"conditiontype": 13, "operator": 0, "value": t} for t in templateids]}
    problem = message(action["subject"], action["message"])
    problem.update({"esc_step_from": 1, "esc_step_to": 1})
    params["operations"] = [problem]
    params["recovery_operations"] = [message(action.get("recovery_subject", "RESOLVED: {EVENT.NAME}"),
                                             action["recovery_message"])]
    # Acknowledgements, comments, severity changes, closing: each is sent as an
    # update of the same incident (Zabbix 6.0 action object, update_operations).
    params["update_operations"] = [message(action["update_subject"], action["update_message"])]
    return params


def media_params(media, url):
    """The webhook's Version and HandlerHost parameters: what the handler puts in
    ``autoremedy.version`` and ``autoremedy.handler_host`` (the Zabbix server,
    as the frontend URL names it; the JavaScript runs on the server)."""
    from urllib.parse import urlsplit
    from autoremedy import __version__
    if "parameters" not in media:
        return media
    fill = {"Version": __version__, "HandlerHost": urlsplit(url).hostname or ""}
    media = dict(media)
    media["parameters"] = [dict(p, value=fill[p["name"]]) if p["name"] in fill and not p.get("value")
                           else p for p in media["parameters"]]
    return media


# --- the node-side hook (a remote command) -------------------------------------------
HOOK_SCRIPT = "autoremedy node hook"
NODE_TEMPLATE = "autoremedy node"
HOOK_ACTION = "autoremedy node hook"
EVENT_TAG = 25          # action condition: event tag (name)


GATE = "/usr/libexec/autoremedy/remediate"


def hook_command(binary, sudo=False):
    """`handle hook` on the node, from the problem's tags. Only problems that carry
    autoremedy_target and autoremedy_check_args reach it (the action's conditions):
    the template sets both on the process and disk triggers, from the operator's
    watch names and the discovered mount points. With ``sudo`` it goes through the
    packages' gate, which accepts only plain check options (never --config)."""
    tags = "{EVENT.TAGS.autoremedy_class} {EVENT.TAGS.autoremedy_target} {EVENT.TAGS.autoremedy_check_args}"
    if sudo:
        return f"sudo -n {GATE} hook {tags}"
    return (f"{binary} handle hook {{EVENT.TAGS.autoremedy_class}} --target {{EVENT.TAGS.autoremedy_target}} "
            "{EVENT.TAGS.autoremedy_check_args}")


def upsert_script(api, binary, sudo=False):
    params = {"name": HOOK_SCRIPT, "type": 0, "scope": 1, "execute_on": 0, "command": hook_command(binary, sudo),
              "description": "autoremedy: re-run the check on the node and forward it, or remediate "
                             "locally when StackStorm is unreachable (guarded)."}
    found = one(api, "script.get", {"filter": {"name": [HOOK_SCRIPT]}, "output": ["scriptid"]},
                f"script {HOOK_SCRIPT}")
    if found:
        api("script.update", dict(params, scriptid=found["scriptid"]))
        return found["scriptid"], "updated"
    return api("script.create", params)["scriptids"][0], "created"


def hook_action_params(templateid, scriptid):
    return {"name": HOOK_ACTION, "eventsource": 0, "status": 0, "esc_period": "1h",
            "filter": {"evaltype": 1, "conditions": [
                {"conditiontype": 13, "operator": 0, "value": templateid},
                {"conditiontype": EVENT_TAG, "operator": 0, "value": "autoremedy_target"},
                {"conditiontype": EVENT_TAG, "operator": 0, "value": "autoremedy_check_args"}]},
            "operations": [{"operationtype": 1, "esc_step_from": 1, "esc_step_to": 1,
                            "opcommand": {"scriptid": scriptid},
                            "opcommand_hst": [{"hostid": "0"}]}]}    # "0": the problem's own host


def upsert_action(api, params):
    found = one(api, "action.get", {"filter": {"name": [params["name"]]}, "output": ["actionid"]},
                f"action {params['name']}")
    if found:
        api("action.update", dict(params, actionid=found["actionid"]))
        return found["actionid"], "updated"
    return api("action.create", params)["actionids"][0], "created"


class NotWired(Exception):
    """An alert would fall back for lack of configuration (exit 4)."""


class TestFailed(Exception):
    """The test alert did not reach StackStorm (exit 5)."""


def node_config_path(args):
    return args.node_config or os.environ.get("AUTOREMEDY_CONFIG") or "/etc/autoremedy/autoremedy.yaml"


def wire_node(args, key, report=print):
    """--via script: the alert script's configuration, written or verified."""
    from autoremedy import zabbix_node
    try:
        zabbix_node.wire(node_config_path(args), args.alert_user, args.st2_url, key, report)
    except zabbix_node.NodeError as exc:
        raise NotWired(str(exc)) from None


def wired_macros(api):
    """--via webhook: {$AR.ST2.URL} must hold a URL, or every alert fails."""
    found = one(api, "usermacro.get", {"globalmacro": True, "filter": {"macro": "{$AR.ST2.URL}"},
                                       "output": ["value"]}, "global macro {$AR.ST2.URL}")
    if not found or not found.get("value"):
        raise NotWired("global macro {$AR.ST2.URL} is not set: every webhook alert would fail "
                       "(give --st2-url and --st2-api-key-file)")
    return found["value"]


def test_alert(args, mediatypes, report=print):
    """One test alert through the chosen media type; StackStorm's answer printed."""
    import socket
    from autoremedy import zabbix_node
    if args.via == "script":
        script = os.path.join(args.alertscripts or zabbix_node.alertscripts_dir(), "autoremedy_alert")
        try:
            code, output = zabbix_node.run_alert_script(script, args.alert_user, node_config_path(args),
                                                        socket.gethostname(), args.sendto)
        except zabbix_node.NodeError as exc:
            raise TestFailed(str(exc)) from None
        for line in output.splitlines():
            report(f"test alert: {line}")
        if code != 0 or "zabbix alert: delivered to StackStorm" not in output:
            raise TestFailed(f"the test alert did not reach StackStorm (alert script exit {code})")
        return
    import json
    import shutil
    import subprocess
    tool = shutil.which("zabbix_js") or "/usr/sbin/zabbix_js"
    media = media_params(next(m for m in mediatypes if m["type"] == 4), args.url)
    if not os.path.exists(tool):
        raise TestFailed("zabbix_js is not installed (zabbix-server packages): cannot run the "
                         "webhook's script here")
    key = read_secret(args.st2_api_key_file, "AUTOREMEDY_ST2_API_KEY")
    if not (args.st2_url and key):
        raise TestFailed("--test with --via webhook needs --st2-url and --st2-api-key-file")
    params = {p["name"]: p["value"] for p in media["parameters"]}
    params.update({"URL": args.st2_url, "Webhook": args.st2_webhook, "ApiKey": key,
                   "EventID": "0", "EventValue": "1", "EventSource": "3",
                   "Host": socket.gethostname(), "TriggerName": "autoremedy zabbix-setup test alert",
                   "Severity": "1", "EventTags": json.dumps([{"tag": "autoremedy_test",
                                                               "value": "zabbix-setup"}])})
    params = {k: ("" if str(v).startswith("{") and str(v).endswith("}") else v) for k, v in params.items()}
    params["EventTags"] = json.dumps([{"tag": "autoremedy_test", "value": "zabbix-setup"}])
    with tempfile_script(media["script"]) as path:
        ran = subprocess.run([tool, "-s", path, "-p", json.dumps(params)], capture_output=True,
                             text=True, timeout=60)
    answer = (ran.stdout + ran.stderr).strip()
    report(f"test alert: webhook: {answer}")
    if ran.returncode != 0 or answer.splitlines()[-1:] != ["OK"]:
        raise TestFailed("the test alert did not reach StackStorm")


def tempfile_script(text):
    import contextlib
    import tempfile

    @contextlib.contextmanager
    def scoped():
        with tempfile.NamedTemporaryFile("w", suffix=".js") as handle:
            handle.write(text)
            handle.flush()
            yield handle.name
    return scoped()


def setup(api, args, definitions, report=print):
    template, mediatypes, action = definitions
    templateids = import_template(api, template)
    for name in templateids:
        report(f"template {name}: imported")
    note = old_template_note(api)
    if note:
        report(note)
    templateid = list(templateids.values())
    key = None
    if args.st2_url:
        key = read_secret(args.st2_api_key_file, "AUTOREMEDY_ST2_API_KEY")
        if not key:
            raise UsageError("--st2-url needs --st2-api-key-file (or $AUTOREMEDY_ST2_API_KEY)")
        for macro, value, kind in (("{$AR.ST2.URL}", args.st2_url, MACRO_TEXT),
                                   ("{$AR.ST2.WEBHOOK}", args.st2_webhook, MACRO_TEXT),
                                   ("{$AR.ST2.API_KEY}", key, MACRO_SECRET)):
            report(f"global macro {macro}: {set_global_macro(api, macro, value, kind)}")
    ids = {}
    for media in mediatypes:
        ids[media["type"]], what = upsert_mediatype(api, media_params(media, args.url))
        report(f"media type {media['name']}: {what}")
    chosen = next(m for m in mediatypes if m["type"] == (1 if args.via == "script" else 4))
    mediatypeid = ids[chosen["type"]]
    userid, what = upsert_user(api, mediatypeid, args.sendto)
    report(f"user {USER}: {what} (media: {chosen['name']})")
    actionid, what = upsert_action(api, action_params(action, templateid, mediatypeid, userid))
    report(f"action {action['name']}: {what}")
    ids = {"templateid": templateid, "mediatypeid": mediatypeid, "userid": userid, "actionid": actionid}
    if args.node_hook:
        scriptid, what = upsert_script(api, args.autoremedy_bin, args.node_hook_sudo)
        report(f"script {HOOK_SCRIPT}: {what}")
        # The node template's process and disk problems are the ones with check options.
        node = templateids.get(NODE_TEMPLATE, templateid[0])
        ids["hook_actionid"], what = upsert_action(api, hook_action_params(node, scriptid))
        report(f"action {HOOK_ACTION}: {what}")
    # Every path created above must work: refuse to report success otherwise.
    if args.via == "script":
        wire_node(args, key, report)
    else:
        report(f"global macro {{$AR.ST2.URL}}: verified ({wired_macros(api)})")
    if args.test:
        test_alert(args, mediatypes, report)
    return ids


def main(argv):
    try:
        args = parser().parse_args(argv)
        token = read_secret(args.token_file, "AUTOREMEDY_ZABBIX_TOKEN")
        password = None if token else read_secret(args.password_file, "AUTOREMEDY_ZABBIX_PASSWORD")
        if not token and not password:
            raise UsageError("give --password-file or --token-file (or $AUTOREMEDY_ZABBIX_PASSWORD)")
        path = source_dir(args.source)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        definitions = load_definitions(path)      # before any network: bad input fails fast
        api = Api(args.url, args.timeout, not args.no_verify)
        api.login(args.user, password, token)
        setup(api, args, definitions)
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except NotWired as exc:
        return fail(f"not wired: {exc}", EXIT_NOT_WIRED)
    except TestFailed as exc:
        return fail(f"test alert: {exc}", EXIT_TEST_FAILED)
    except (SetupError, OSError, ValueError) as exc:
        return fail(str(exc) if isinstance(exc, SetupError) else describe(exc), EXIT_CONFIG)
    return 0
