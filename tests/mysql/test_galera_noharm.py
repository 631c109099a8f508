"""The galera remediation through the shared no-harm harness, on the real 3-node cluster.

The snapshot is raw SQL (PyMySQL as root, never autoremedy's code): the Primary
components, each node's witness rows (dirty reads on a non-Primary node) and
history UUID. A crash of two nodes, bootstrapped while their services bring
them back, must leave all of it as it was; a deliberately widened remediation
that skips the partition refusals must end ``failed`` naming the second Primary.
"""
import json
import threading

import pytest

from autoremedy.audit import Audit
from autoremedy.config import Config
from autoremedy.contract.remediation import Trigger, perform
from autoremedy.remediations import galera as rem

import galera_cluster as gc
from noharm_harness import Case, expect_harm, expect_no_harm


class ClusterCase(Case):
    cls_name = "galera"

    def __init__(self, cluster):
        self.cluster = cluster

    def snapshot(self):
        out = {"primary components": sorted(sorted(c) for c in self.cluster.primary_components())}
        for name, node in self.cluster.nodes.items():
            status = self.cluster.try_wsrep(node)
            if status is None:
                out[f"{name} rows"] = out[f"{name} history"] = "not answering"
                continue
            out[f"{name} rows"] = self.cluster.rows(node)
            out[f"{name} history"] = status["wsrep_local_state_uuid"]
        return out


class CrashCase(ClusterCase):
    """g2 and g3 crash; their services restart them once g1 is Primary again (what
    systemd does): the bootstrap of g1 is the whole change, and the cluster ends
    whole with every row."""

    def __init__(self, cluster, run_cli, path, env):
        super().__init__(cluster)
        self.run_cli, self.path, self.env = run_cli, path, env

    def inject(self):
        self.cluster.kill("g2", "g3")
        self.cluster.wait_status(self.cluster.g1, "wsrep_cluster_status", "non-Primary")

    def remediate(self):
        def services():
            # Two hosts' services, at once (each runs --wsrep-recover first: seconds on a loaded machine).
            self.cluster.wait_status(self.cluster.g1, "wsrep_cluster_status", "Primary", timeout=90)
            starts = [threading.Thread(target=gc.service_start, args=(node,), daemon=True)
                      for node in (self.cluster.g2, self.cluster.g3)]
            for start in starts:
                start.start()
            for start in starts:
                start.join(120)
        restarter = threading.Thread(target=services, daemon=True)
        restarter.start()
        try:
            ran = self.run_cli("remediate", "galera", "test", "--config", self.path, "--json", env=self.env,
                               timeout=240)
        finally:
            restarter.join(120)
        outcome = json.loads(ran.stdout)
        # The harness shows the outcome cut at 2,000 characters: the reason first.
        print(f"galera outcome: {outcome['outcome']}: {outcome['reason']}")
        return outcome


class SkipsThePartitionRefusal(rem.GaleraBootstrap):
    """Widened on purpose: ignores a Primary component elsewhere and survivors in
    separate components (it bootstraps the most advanced non-Primary node)."""

    def decide(self, nodes, entry, target):
        survivors = [n for n in nodes.values() if n.reachable and not n.primary]
        return [], max(survivors, key=lambda n: n.seqno), []

    def observe(self, target, first, seconds):
        return []

    def last_look(self, target, name):
        return None


class PartitionCase(ClusterCase):
    """g3 (pc.weight 3) keeps the Primary; g1 and g2 are each cut off."""

    def __init__(self, cluster, path):
        super().__init__(cluster)
        self.path = path

    def inject(self):
        self.cluster.weight("g3", 3)
        self.cluster.isolate("g1", "g2")
        self.cluster.wait_status(self.cluster.g1, "wsrep_cluster_status", "non-Primary")
        self.cluster.wait_status(self.cluster.g2, "wsrep_cluster_status", "non-Primary")

    def remediate(self):
        config = Config.load(self.path)
        remediation = SkipsThePartitionRefusal(config, audit=Audit(config.state_dir + "/audit.log",
                                                                   use_syslog=False))
        return perform(remediation, "test", Trigger(source="test")).to_dict()


@pytest.fixture
def cluster(galera):
    galera.heal()
    galera.witness(100)
    return galera


@pytest.mark.integration
def test_a_crash_bootstrap_harms_nothing(cluster, run_cli, root_cnf, make_config, tmp_path):
    exec_path, log = gc.recover_guard(str(tmp_path / "guard"))
    path = make_config(gc.config(cluster, root_cnf, settle=120))     # generous: CI shares 2 cores
    case = CrashCase(cluster, run_cli, path, {"AUTOREMEDY_EXEC_PATH": exec_path})
    try:
        run = expect_no_harm(case)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.describe()}") from None
    assert run.after["primary components"] == [["3321", "3322", "3323"]]
    assert [run.after[f"g{i} rows"] for i in (1, 2, 3)] == [100, 100, 100]
    assert {r["kind"]: r["names"] for r in run.outcome["reach"]} == {"node": ["g1"], "datadir": ["g2", "g3"]}
    assert [c[0] for c in gc.recover_calls(log)] == ["RECOVER", "RECOVER"]


@pytest.mark.integration
def test_a_bootstrap_in_a_partition_is_named_harm(cluster, root_cnf, make_config):
    path = make_config(gc.config(cluster, root_cnf))
    run = expect_harm(PartitionCase(cluster, path),
                      named=["invariant broken: Primary components (a second one is a split brain) (at most one)"])
    assert run.outcome["outcome"] == "failed", run
    components = next(i for i in run.outcome["invariants"] if i["name"].startswith("Primary components"))
    assert (components["before"], components["after"], components["holds"]) == ([["g3"]], [["g1"], ["g3"]], False)
    assert run.after["primary components"] == [["3321"], ["3323"]]      # read without autoremedy: two of them
    assert [run.after[f"g{i} rows"] for i in (1, 2, 3)] == [100, 100, 100]
