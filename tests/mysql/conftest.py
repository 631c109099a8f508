"""Fixtures for the MySQL / MariaDB / Galera area.

Session-scoped throwaway servers (tests/mysql/mysql_instances.py): a GTID
primary/replica pair on 3317/3318 (the replica also serves TLS) and a 2-node
Galera cluster on 3321/3322, all under one temp directory, always stopped at
the end. The shared MariaDB on 3306 is never touched. A test that breaks
replication leaves the repair to ``pair.heal()``, which the ``replication``
fixture runs before each test.
"""
import os
import uuid

import pytest

import mysql_instances as mi


@pytest.fixture(scope="session")
def mysql_base():
    mi.sweep_leftovers(set(mi.PAIR_PORTS) | {p[0] for p in mi.GALERA_NODES.values()})
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


@pytest.fixture
def replication(pair):
    """The pair, healthy and caught up, before each test."""
    pair.heal()
    return pair


@pytest.fixture(scope="session")
def galera(mysql_base):
    cluster = mi.Galera(mysql_base)
    try:
        cluster.setup()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def second_source(replication, galera):
    """Multi-source: a named connection 'east' on the replica, from Galera node g1,
    which binlogs in GTID domain 5 (the default connection ignores domain 5)."""
    galera.heal()
    replication.change_master("east", domains="DO_DOMAIN_IDS=(5)", port=galera.g1.port)
    replication.replica.sql("START SLAVE 'east'")
    galera.g1.sql("CREATE DATABASE IF NOT EXISTS east_db")
    mi.wait_until(lambda: replication.replica.sql("SHOW DATABASES LIKE 'east_db'"), 15,
                  what="east_db replicated through 'east'")
    mi.wait_until(lambda: (lambda r: r and r["Slave_IO_Running"] == r["Slave_SQL_Running"] == "Yes")(
        replication.replica.status("east")), 15, what="'east' running")
    return galera


@pytest.fixture
def table(replication):
    """A fresh table app_<id>.t (id INT PRIMARY KEY, v VARCHAR) replicated to the replica."""
    db = "app_" + uuid.uuid4().hex[:8]
    replication.primary.sql(f"CREATE DATABASE {db}",
                            f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(40))",
                            f"INSERT INTO {db}.t VALUES (1, 'one'), (2, 'two')")
    replication.wait_caught_up()
    return db


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
                    "g1": {"host": "127.0.0.1", "port": mi.GALERA_NODES["g1"][0]},
                    "g2": {"host": "127.0.0.1", "port": mi.GALERA_NODES["g2"][0]},
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
