"""A real Zabbix 6.0 (server, agent, `php -S` frontend API) for the tests, from
Debian's packages, without systemd (worked out and measured on Debian 12 with its
zabbix 1:6.0.14 packages; the database as in
https://www.zabbix.com/documentation/6.0/en/manual/appendix/install/db_scripts).

The database lives in the machine's shared MariaDB (127.0.0.1:3306) under its
own name and user, and is kept between runs (the schema import is skipped when
it is already there); everything else (configs, logs, pid files, the scripts)
is under ``base``, which the zabbix user must be able to traverse. Ports:
10051 server, 10050 agent, 18080 frontend (docs/DEVELOPING.md).
"""
import gzip
import os
import pwd
import signal
import socket
import subprocess
import time

DB, DB_USER, DB_PASSWORD = "autoremedy_zabbix", "ar_zabbix", "ar-zabbix-ci"
SERVER_PORT, AGENT_PORT, FRONTEND_PORT = 10051, 10050, 18080
HOSTNAME = "ci-host"
SCHEMA = "/usr/share/zabbix-server-mysql"
FRONTEND_CONF = "/etc/zabbix/zabbix.conf.php"
API_URL = f"http://127.0.0.1:{FRONTEND_PORT}/api_jsonrpc.php"


def mariadb(sql=None, database=None, stdin=None):
    argv = ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-P3306", "-uroot", "-N", "-B"]
    if database:
        argv.append(database)
    if sql is not None:
        argv += ["-e", sql]
    proc = subprocess.run(argv, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mariadb: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def merged_inserts(lines, cap=4 << 20):
    """Join consecutive single-row INSERTs into the same table into multi-row
    statements: data.sql's 130,000 INSERTs take 28 s one by one, ~4 s merged
    (measured; CHECKSUM TABLE over all tables is identical to the stock import)."""
    prefix, rows, size = None, [], 0
    for line in lines:
        head, sep, tail = line.partition(" values ")
        if line.startswith("INSERT INTO ") and sep and tail.rstrip().endswith(");"):
            row = tail.rstrip()[:-1]
            if head == prefix and size + len(row) < cap:
                rows.append(row)
                size += len(row)
                continue
            if prefix is not None:
                yield f"{prefix} values {','.join(rows)};\n"
            prefix, rows, size = head, [row], len(row)
            continue
        if prefix is not None:
            yield f"{prefix} values {','.join(rows)};\n"
            prefix, rows, size = None, [], 0
        yield line
    if prefix is not None:
        yield f"{prefix} values {','.join(rows)};\n"


def prepare_database():
    mariadb(f"CREATE DATABASE IF NOT EXISTS {DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    for host in ("localhost", "127.0.0.1", "%"):
        mariadb(f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{host}' IDENTIFIED BY '{DB_PASSWORD}'; "
                f"GRANT ALL ON {DB}.* TO '{DB_USER}'@'{host}'")
    have = mariadb(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='{DB}' "
                   "AND table_name IN ('dbversion','users')").strip()
    if have == "2" and mariadb("SELECT COUNT(*) FROM users", DB).strip() not in ("", "0"):
        return "kept"
    parts = ["SET foreign_key_checks=0; SET unique_checks=0;\n"]
    for name in ("schema.sql.gz", "images.sql.gz"):
        with gzip.open(os.path.join(SCHEMA, name), "rt", encoding="utf-8") as handle:
            parts.append(handle.read())
    with gzip.open(os.path.join(SCHEMA, "data.sql.gz"), "rt", encoding="utf-8") as handle:
        parts.extend(merged_inserts(handle))
    mariadb(None, DB, stdin="".join(parts).encode())
    # The stock host would poll the Linux template against our agent (pitfall 18).
    mariadb("UPDATE hosts SET status=1 WHERE host='Zabbix server'", DB)
    return "imported"


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    def __init__(self, base, autoremedy_bin, env):
        self.base = str(base)
        self.bin = autoremedy_bin
        self.env = env            # the environment the daemons (and so our scripts) inherit
        self.procs = {}
        self.zabbix = pwd.getpwnam("zabbix")

    # -- files ---------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.base, *parts)

    def install_script(self, source, directory):
        """Copy one of packaging/zabbix's scripts, pointed at our autoremedy."""
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, os.path.basename(source))
        with open(source) as handle:
            text = handle.read().replace("autoremedy=/usr/bin/autoremedy", f"autoremedy={self.bin}")
        with open(target, "w") as handle:
            handle.write(text)
        os.chmod(target, 0o755)
        return target

    def write_configs(self, packaging):
        z = os.path.join(packaging, "zabbix")
        self.install_script(os.path.join(z, "externalscripts", "autoremedy_check"), self.path("externalscripts"))
        self.install_script(os.path.join(z, "alertscripts", "autoremedy_alert"), self.path("alertscripts"))
        with open(self.path("zabbix_server.conf"), "w") as handle:
            handle.write("\n".join([
                f"ListenPort={SERVER_PORT}", f"LogFile={self.path('zabbix_server.log')}", "LogFileSize=0",
                f"PidFile={self.path('zabbix_server.pid')}", f"SocketDir={self.base}",
                "DBHost=127.0.0.1", "DBPort=3306", f"DBName={DB}", f"DBUser={DB_USER}",
                f"DBPassword={DB_PASSWORD}", "AllowUnsupportedDBVersions=1", "CacheUpdateFrequency=5",
                "Timeout=4", f"ExternalScripts={self.path('externalscripts')}",
                f"AlertScriptsPath={self.path('alertscripts')}", "StatsAllowedIP=127.0.0.1",
                "StartPollers=2", "StartPollersUnreachable=1", "StartHTTPPollers=1", "StartDiscoverers=1",
                "StartLLDProcessors=1", "StartAlerters=2", "",
            ]))
        with open(os.path.join(z, "zabbix_agentd.d", "autoremedy.conf")) as handle:
            params = handle.read().replace("/usr/bin/autoremedy", self.bin)
        with open(self.path("zabbix_agentd.conf"), "w") as handle:
            handle.write("\n".join([
                f"PidFile={self.path('zabbix_agentd.pid')}", f"LogFile={self.path('zabbix_agentd.log')}",
                "LogFileSize=0", "Server=127.0.0.1", "ListenIP=127.0.0.1", f"ListenPort={AGENT_PORT}",
                f"Hostname={HOSTNAME}", "Timeout=3",
                # The node hook is a remote command (zabbix-setup --node-hook).
                "AllowKey=system.run[*]", "",
            ]) + params)
        with open(FRONTEND_CONF, "w") as handle:
            handle.write(f"""<?php
// Written by autoremedy's tests (tests/packaging/zabbix_stack.py).
global $DB;
$DB['TYPE'] = 'MYSQL'; $DB['SERVER'] = '127.0.0.1'; $DB['PORT'] = '3306';
$DB['DATABASE'] = '{DB}'; $DB['USER'] = '{DB_USER}'; $DB['PASSWORD'] = '{DB_PASSWORD}';
$DB['SCHEMA'] = ''; $DB['ENCRYPTION'] = false; $DB['KEY_FILE'] = ''; $DB['CERT_FILE'] = '';
$DB['CA_FILE'] = ''; $DB['VERIFY_HOST'] = false; $DB['CIPHER_LIST'] = ''; $DB['VAULT_URL'] = '';
$DB['VAULT_DB_PATH'] = ''; $DB['VAULT_TOKEN'] = ''; $DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '127.0.0.1'; $ZBX_SERVER_PORT = '{SERVER_PORT}'; $ZBX_SERVER_NAME = 'autoremedy-ci';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
""")
        for directory, _, files in os.walk(self.base):
            os.chown(directory, self.zabbix.pw_uid, self.zabbix.pw_gid)
            for name in files:
                os.chown(os.path.join(directory, name), self.zabbix.pw_uid, self.zabbix.pw_gid)

    # -- processes ----------------------------------------------------------------------
    def spawn(self, name, argv, env=None):
        out = open(self.path(f"{name}.out"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env or self.env, cwd=self.base, start_new_session=True)

    def start(self, packaging):
        busy = [p for p in (SERVER_PORT, AGENT_PORT, FRONTEND_PORT) if port_open(p)]
        if busy:
            raise RuntimeError(f"ports {busy} are already in use (a Zabbix left over from another run?)")
        self.db = prepare_database()
        self.write_configs(packaging)
        self.spawn("server", ["/usr/sbin/zabbix_server", "-f", "-c", self.path("zabbix_server.conf")])
        self.spawn("agent", ["/usr/sbin/zabbix_agentd", "-f", "-c", self.path("zabbix_agentd.conf")])
        php_env = dict(self.env, PHP_CLI_SERVER_WORKERS="4")
        self.spawn("frontend", ["php", "-d", "date.timezone=UTC", "-d", "memory_limit=512M",
                                "-d", "post_max_size=16M", "-d", "max_execution_time=300",
                                "-S", f"127.0.0.1:{FRONTEND_PORT}", "-t", "/usr/share/zabbix"], php_env)
        self.wait_ready()

    def wait_ready(self, timeout=60):
        import json
        import urllib.request
        deadline = time.monotonic() + timeout
        checks = {
            "frontend": lambda: b'"result"' in urllib.request.urlopen(urllib.request.Request(
                API_URL, data=json.dumps({"jsonrpc": "2.0", "method": "apiinfo.version", "params": {},
                                          "id": 1}).encode(),
                headers={"Content-Type": "application/json-rpc"}), timeout=2).read(),
            "server": lambda: port_open(SERVER_PORT) and "server #0 started" in self.log("zabbix_server.log"),
            "agent": lambda: subprocess.run(["zabbix_get", "-s", "127.0.0.1", "-p", str(AGENT_PORT), "-k",
                                             "agent.ping"], capture_output=True, text=True).stdout.strip() == "1",
        }
        pending = dict(checks)
        while pending and time.monotonic() < deadline:
            for name, probe in list(pending.items()):
                try:
                    if probe():
                        del pending[name]
                except OSError:
                    pass
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"zabbix {name} exited ({proc.returncode}): {self.tail(name)}")
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"zabbix not ready after {timeout}s: {sorted(pending)}; "
                               f"server log: {self.log('zabbix_server.log')[-1500:]}")

    def log(self, name):
        try:
            with open(self.path(name), errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def tail(self, name):
        return (self.log(f"{name}.out") + self.log(f"zabbix_{name}.log"))[-1500:]

    def reload_agent_parameters(self):
        subprocess.run(["/usr/sbin/zabbix_agentd", "-c", self.path("zabbix_agentd.conf"), "-R",
                        "userparameter_reload"], capture_output=True, check=True)

    def stop(self):
        """TERM each main PID, wait for its children, then sweep its process group
        (a zombie still passes kill -0, hence the process-group sweep); the shared
        MariaDB is left alone."""
        for name in ("frontend", "agent", "server"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.3)
            if proc.poll() is None:
                proc.wait(5)

    # -- API -----------------------------------------------------------------------------
    def api(self, user="Admin", password="zabbix"):
        from pyzabbix import ZabbixAPI
        zapi = ZabbixAPI(API_URL, timeout=30)
        zapi.login(user, password)
        return zapi


def zabbix_get(key, timeout=10):
    proc = subprocess.run(["zabbix_get", "-s", "127.0.0.1", "-p", str(AGENT_PORT), "-t", str(timeout), "-k", key],
                          capture_output=True, text=True)
    return proc.stdout.strip()


def wait_for(probe, timeout, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")

