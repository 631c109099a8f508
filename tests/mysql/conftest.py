"""Fixtures for the MySQL / MariaDB / Galera area.

Session-scoped throwaway servers (tests/mysql/mysql_instances.py): a GTID
primary/replica pair on 3317/3318 (the replica also serves TLS: the connection
tests) and the replication topology on 3311-3314 (replication_topology.py: the
replication check and repair tests, reset to empty and equal before each test),
under one temp directory; a 3-node Galera cluster on 3321-3323
(galera_cluster.py, its own temp directory). All always stopped at the end. The
shared MariaDB on 3306 is never touched.
"""
import os

import pytest

import galera_cluster as gc
import mysql_instances as mi


@pytest.fixture(scope="session")
def mysql_base():
    mi.sweep_leftovers(set(mi.PAIR_PORTS))
    base = mi.make_base()
    yield base
    mi.remove(base)


@pytest.fixture(scope="session")
def root_cnf(mysql_base):
    """A client option file logging in as the throwaway servers' root (empty password)."""
    path = os.path.join(mysql_base, "root.cnf")
    with open(path, "w") as handle:
        handle.write("[client]\nuser = root\npassword = ''\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="session")
def pair(mysql_base):
    started = mi.Pair(mysql_base)
    try:
        started.setup()
        yield started
    finally:
        started.shutdown()


# The replication repair tests' topology (tests/mysql/replication_topology.py):
# source 3311 -> replica 3312 -> chained 3314, source -> sibling 3313.
@pytest.fixture(scope="session")
def topology(mysql_base):
    import replication_topology as rt
    mi.sweep_leftovers(set(rt.PORTS.values()))
    with rt.Topology(mysql_base) as started:      # set up; always shut down
        yield started


@pytest.fixture
def topo(topology):
    """The topology empty, equal and replicating before each test."""
    topology.reset()
    return topology


@pytest.fixture
def topo_config(make_config, root_cnf):
    """A configuration naming the topology's servers and one mysql-replication
    target (``name``) with the given settings; guards relaxed for repeated runs."""
    import replication_topology as rt

    def make(name="replica", state_dir=None, **target):
        spec = {"server": "replica", "primary": "source", "catch_up_timeout": 30}
        spec.update(target)
        data = {"mysql": {"option_file": root_cnf, "connect_timeout": 3,
                          "servers": {n: {"host": "127.0.0.1", "port": p} for n, p in rt.PORTS.items()}},
                "guards": {"rate_limit": {"max": 100, "per": 3600}, "global_cap": {"max": 100, "per": 3600},
                           "flap": {"changes": 1000, "window": 60}},
                "remediations": {"mysql-replication": {"enabled": True, "targets": {name: spec}}}}
        if state_dir is not None:
            data["state_dir"] = str(state_dir)
        return make_config(data, name=f"topo-{name}-{os.urandom(3).hex()}.yaml")
    return make


@pytest.fixture(scope="session")
def galera():
    gc.sweep_leftovers()
    base = gc.make_base()
    cluster = gc.Cluster(base)
    try:
        cluster.setup()
        yield cluster
    finally:
        cluster.shutdown()
        mi.remove(base)


@pytest.fixture
def mysql_config(make_config, root_cnf, pair):
    """Write a configuration with the throwaway servers in mysql.servers and any
    remediation sections given; guards relaxed so tests can repeat runs. Each call
    writes its own file."""
    count = [0]

    def make(remediations=None, servers=None, **top):
        count[0] += 1
        data = {
            "mysql": {
                "option_file": root_cnf,
                "connect_timeout": 3,
                "servers": {
                    "primary": {"host": "127.0.0.1", "port": mi.PAIR_PORTS[0]},
                    "replica": {"host": "127.0.0.1", "port": mi.PAIR_PORTS[1]},
                    **{name: {"host": "127.0.0.1", "port": ports[0]} for name, ports in gc.NODES.items()},
                    **(servers or {}),
                },
            },
            "guards": {"rate_limit": {"max": 100, "per": 3600}, "global_cap": {"max": 100, "per": 3600},
                       "flap": {"changes": 1000, "window": 60}},
            "remediations": remediations or {},
        }
        data.update(top)
        return make_config(data, name=f"autoremedy-{count[0]}.yaml")
    return make
