"""One measured process of bench_mysql_replication: ``compare``, ``checksum`` or ``evidence``.

    _mysql_replication_probe.py compare  LOGIN.cnf SOURCE_PORT REPLICA_PORT CHUNK_ROWS
    _mysql_replication_probe.py checksum LOGIN.cnf SOURCE_PORT REPLICA_PORT
    _mysql_replication_probe.py evidence LOGIN.cnf SOURCE_PORT REPLICA_PORT
"""
import os
import sys
import tempfile


def servers(cnf, source_port, replica_port):
    from autoremedy.clients import mysql
    return (mysql.resolve(None, host="127.0.0.1", port=int(source_port), option_file=cnf),
            mysql.resolve(None, host="127.0.0.1", port=int(replica_port), option_file=cnf))


def main(argv):
    mode, cnf, source_port, replica_port = argv[:4]
    source, replica = servers(cnf, source_port, replica_port)
    if mode == "compare":
        from autoremedy.remediations import _replication_compare as compare
        result = compare.compare(replica, source, "", databases=["bench"], chunk_rows=int(argv[4]))
        print(result.summary(), f"({result.seconds:.2f}s inside)")
        return 0 if result.ok else 1
    if mode == "checksum":
        from autoremedy.clients import mysql
        sums = []
        for server in (source, replica):
            with mysql.connect(server) as session:
                sums.append(session.row("CHECKSUM TABLE bench.t")["Checksum"])
        return 0 if sums[0] == sums[1] else 1
    if mode == "evidence":
        return evidence(cnf, source_port, replica_port)
    raise SystemExit(f"unknown mode {mode}")


def evidence(cnf, source_port, replica_port):
    """Read what perform() reads before a run of a thread-restart plan."""
    import yaml
    from autoremedy.clients import mysql
    from autoremedy.checks import mysql_replication as check
    from autoremedy.config import Config
    from autoremedy.contract.noharm import Evidence
    from autoremedy.remediations import mysql_replication as rem
    from autoremedy.remediations._replication_plan import Scope
    state = tempfile.mkdtemp(prefix="bench-evidence-")
    path = os.path.join(state, "c.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump({"state_dir": state, "mysql": {"option_file": cnf, "servers": {
            "source": {"host": "127.0.0.1", "port": int(source_port)},
            "replica": {"host": "127.0.0.1", "port": int(replica_port)}}},
            "remediations": {"mysql-replication": {"enabled": True, "targets": {"replica": {
                "server": "replica", "primary": "source"}}}}}, handle)
    remediation = rem.REMEDIATION(Config.load(path))
    with mysql.connect(remediation.server("replica")) as session:
        channel = check.read_status(session)[1][0]
        scope = Scope("", "default", since=(channel.exec_file, channel.exec_pos))
        plan = [remediation._compare_step(session, "replica", channel, scope)]
    Evidence(remediation.reach("replica", plan), remediation.invariants("replica", plan)).read_before()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
