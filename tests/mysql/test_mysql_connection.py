"""autoremedy.clients.mysql: option files, the mysql: section, address/credential precedence, TLS, timeouts, errors."""
import os
import socket
import subprocess
import threading
import time

import pytest

from autoremedy.clients import mysql, optionfile
from autoremedy.config import Config, ConfigError
from autoremedy.contract.result import CheckError

import mysql_instances as mi


def write(path, text):
    path.write_text(text)
    return str(path)


# --- option files ------------------------------------------------------------------

TRICKY = """\
# a comment
[client]
user = monitor   # trailing comment
password = "it's#secret\\\\x"
loose_ssl_ca = '/etc/ssl/db ca.pem'
ssl-verify-server-cert
port=3318
[mysqld]
user = mysql
[client-mariadb]
host = db.example
[autoremedy]
user = override
"""


@pytest.mark.integration
def test_option_file_reads_like_the_mariadb_client(tmp_path):
    """Our reader and the real parser (my_print_defaults) agree on a tricky file."""
    path = write(tmp_path / "my.cnf", TRICKY)
    ours = optionfile.read(path, ["client", "client-server", "client-mariadb"])
    real = subprocess.run(["my_print_defaults", f"--defaults-file={path}", "client", "client-server",
                           "client-mariadb"], capture_output=True, text=True, check=True).stdout.split("\n")
    theirs = {}
    for line in filter(None, real):
        key, _, value = line[2:].partition("=")
        key = key.replace("_", "-")
        theirs[key[len("loose-"):] if key.startswith("loose-") else key] = value if _ else None
    assert ours == theirs
    assert ours["password"] == "it's#secret\\x"
    assert ours["ssl-verify-server-cert"] is None


def test_later_groups_override_and_includes_are_followed(tmp_path):
    extra = tmp_path / "conf.d"
    extra.mkdir()
    write(extra / "10-pw.cnf", "[client]\npassword = from-include\n")
    write(extra / "ignored.txt", "[client]\nuser = never\n")
    path = write(tmp_path / "my.cnf", TRICKY + f"!includedir {extra}\n")
    opts = optionfile.read(path, ["client", "autoremedy"])
    assert opts["user"] == "override"
    assert opts["password"] == "from-include"
    assert "host" not in opts           # [client-mariadb] not asked for


def test_written_option_file_round_trips_through_the_real_parser(tmp_path):
    server = mysql.Server("x", host="h", port=1, user="u", password="p'a\"ss#w\\rd")
    path, argv = mysql.client_option_file(server, str(tmp_path))    # a directory of ours, as safefs.pinned_path names it
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        real = subprocess.run(["my_print_defaults", f"--defaults-file={path}", "client"],
                              capture_output=True, text=True, check=True).stdout.split("\n")
        assert "--password=p'a\"ss#w\\rd" in real
        assert optionfile.read(path, ["client"])["password"] == "p'a\"ss#w\\rd"
        assert argv == ["--protocol=TCP", "--host=h", "--port=1"]
        assert not any("p'a" in a for a in argv)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("problem, expected", [
    ("missing", "no such file"),
    ("directory", "Is a directory"),
])
def test_option_file_problems_are_one_line_check_errors(tmp_path, problem, expected):
    path = tmp_path / "my.cnf"
    if problem == "directory":
        path.mkdir()
    with pytest.raises(CheckError, match=expected):
        optionfile.read(str(path), ["client"])


# --- configuration and precedence --------------------------------------------------------

def config(section, tmp_path):
    return Config({"state_dir": str(tmp_path), "mysql": section})


@pytest.mark.parametrize("section, message", [
    ({"servers": {"a": {"hostname": "x"}}}, "mysql.servers.a.hostname: unknown key"),
    ({"servers": {"a": {"port": "3306"}}}, "mysql.servers.a.port: expected an integer"),
    ({"tls": {"mode": "sometimes"}}, "mysql.tls.mode: 'sometimes' is not one of"),
    ({"servers": {"a": {"tls": {"mode": "yes"}}}}, "mysql.servers.a.tls.mode"),
    ({"connect_timeout": "soon"}, "mysql.connect_timeout: invalid duration"),
    ({"servers": ["a"]}, "mysql.servers: expected a mapping"),
])
def test_bad_mysql_section_names_the_key(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        mysql.settings(config(section, tmp_path))


def test_precedence_option_file_then_configuration_then_arguments(tmp_path):
    cnf = write(tmp_path / "c.cnf", "[client]\nuser=fileuser\npassword=filepw\nhost=filehost\nport=1111\n"
                "ssl-ca=/ca.pem\n")
    pw = write(tmp_path / "pw", "secretpw\n")
    cfg = config({"option_file": cnf, "connect_timeout": "2s",
                  "servers": {"db": {"host": "cfghost", "user": "cfguser", "password_file": pw}}}, tmp_path)
    server = mysql.resolve(cfg, "db", environ={})
    assert (server.host, server.port, server.user, server.password) == ("cfghost", 1111, "cfguser", "secretpw")
    assert server.tls_mode == "verify-ca" and server.connect_timeout == 2.0
    override = mysql.resolve(cfg, "db", host="clihost", port=2222, tls_mode="disabled", environ={})
    assert (override.host, override.port, override.tls_mode) == ("clihost", 2222, "disabled")
    assert "secretpw" not in repr(server)


def test_unknown_server_name_lists_the_known_ones(tmp_path):
    cfg = config({"servers": {"a": {}, "b": {}}}, tmp_path)
    with pytest.raises(CheckError, match=r"mysql.servers.c: no such server .*known: a, b"):
        mysql.resolve(cfg, "c", environ={})


def test_home_my_cnf_is_the_default_and_a_port_means_tcp(tmp_path):
    write(tmp_path / ".my.cnf", "[client]\nuser=homeuser\nsocket=/nonexistent.sock\n")
    server = mysql.resolve(None, environ={"HOME": str(tmp_path)})
    assert server.user == "homeuser" and server.socket == "/nonexistent.sock" and server.tls_mode == "disabled"
    tcp = mysql.resolve(None, port=3318, environ={"HOME": str(tmp_path)})
    assert (tcp.socket, tcp.host, tcp.port) == (None, "127.0.0.1", 3318)


@pytest.mark.parametrize("options, mode", [
    ("", "disabled"),                      # loopback: TLS protects nothing
    ("ssl-ca=/ca.pem", "verify-ca"),
    ("ssl-ca=/ca.pem\nssl-verify-server-cert", "verify-identity"),
    ("ssl", "required"),
    ("skip-ssl", "disabled"),
    ("ssl-mode=REQUIRED", "required"),
])
def test_tls_mode_from_the_option_file(tmp_path, options, mode):
    cnf = write(tmp_path / "c.cnf", f"[client]\nhost=127.0.0.1\n{options}\n")
    assert mysql.resolve(None, option_file=cnf, environ={}).tls_mode == mode


def test_remote_host_defaults_to_preferred_tls(tmp_path):
    assert mysql.resolve(None, host="db.example", environ={"HOME": str(tmp_path)}).tls_mode == "preferred"


# --- real servers -------------------------------------------------------------------------

@pytest.mark.integration
def test_connects_with_a_verified_certificate_and_reports_tls(pair, root_cnf):
    ca = os.path.join(pair.tls_dir, "ca.pem")
    for mode in ("verify-ca", "verify-identity"):
        server = mysql.resolve(None, host="127.0.0.1", port=mi.PAIR_PORTS[1], option_file=root_cnf,
                               tls_mode=mode, tls_ca=ca, environ={})
        with mysql.connect(server) as session:
            assert session.tls_version().startswith("TLSv1")
            assert session.flavour == "mariadb" and session.version >= (10, 5, 0)


@pytest.mark.integration
def test_wrong_ca_and_tls_required_without_tls_are_refused(pair, root_cnf):
    other = os.path.join(pair.tls_dir, "other-ca.pem")
    server = mysql.resolve(None, host="127.0.0.1", port=mi.PAIR_PORTS[1], option_file=root_cnf,
                           tls_ca=other, environ={})
    with pytest.raises(mysql.SQLError, match="certificate verify failed"):
        mysql.connect(server)
    plain = mysql.resolve(None, host="127.0.0.1", port=mi.PAIR_PORTS[0], option_file=root_cnf,
                          tls_mode="required", environ={})
    with pytest.raises(mysql.SQLError, match="SSL is required but the server doesn't support it"):
        mysql.connect(plain)


def test_a_server_that_never_answers_times_out_on_connect():
    """A listener that accepts but never sends the handshake: the connect timeout ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        server = mysql.Server("silent", host="127.0.0.1", port=listener.getsockname()[1], user="u",
                              tls={"mode": "disabled"}, connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(mysql.SQLError, match="cannot connect to silent"):
            mysql.connect(server)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


@pytest.mark.integration
def test_remediation_sessions_cap_lock_waits_on_the_server(pair, root_cnf):
    server = mysql.resolve(None, port=mi.PAIR_PORTS[0], option_file=root_cnf, environ={})
    with mysql.connect(server, lock_wait=7) as session:
        assert session.value("SELECT @@session.innodb_lock_wait_timeout") == 7
        assert session.value("SELECT @@session.lock_wait_timeout") == 7


def test_identifiers_are_quoted():
    assert mysql.quote_ident("a`b", "t") == "`a``b`.`t`"


@pytest.mark.integration
def test_read_timeout_applies_to_queries_after_a_short_connect(pair, root_cnf):
    server = mysql.resolve(None, port=mi.PAIR_PORTS[0], option_file=root_cnf, environ={})
    server.connect_timeout, server.read_timeout = 0.5, 3.0
    with mysql.connect(server) as session:
        assert session.value("SELECT SLEEP(1)") == 0        # longer than the connect timeout: fine
    server.read_timeout = 0.5
    with mysql.connect(server) as session:
        with pytest.raises(mysql.SQLError, match="error 2013"):
            session.value("SELECT SLEEP(2)")
