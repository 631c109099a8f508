"""The check seam (autoremedy/contract/checkrun.py): the configuration is read once by
whoever runs the checks and passed in, never re-read by each check."""
import json

import pytest

from autoremedy import cli, config as config_module


@pytest.fixture
def reads(monkeypatch):
    """Every configuration file the process parses, in order."""
    seen = []
    real = config_module.read_yaml

    def counting(path):
        seen.append(str(path))
        return real(path)
    monkeypatch.setattr(config_module, "read_yaml", counting)
    return seen


def test_a_batch_of_five_checks_reads_the_configuration_once(make_config, tmp_path, live_process, reads,
                                                              capsys):
    path = make_config({"checks": {"batch": {"checks": [
        {"name": "tmp", "class": "disk", "args": ["-p", str(tmp_path), "-w", "99.9", "-c", "100"]},
        {"name": "root", "class": "disk", "args": ["-p", "/", "-w", "99.9", "-c", "100"]},
        {"name": "alive", "class": "process", "args": ["--cmdline", live_process]},
        {"name": "gone", "class": "process", "args": ["--cmdline", live_process + "-gone"]},
        {"name": "spool", "class": "spool", "args": []}]}}})
    code = cli.main(["check", "batch", "--config", path, "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["data"]["checks"]) == ["alive", "gone", "root", "spool", "tmp"], out
    assert out["data"]["checks"]["gone"]["status"] == 2 and code == 2, out
    assert reads == [path]


def test_one_check_reads_it_once_and_only_when_it_needs_it(make_config, tmp_path, reads, capsys):
    path = make_config({})
    assert cli.main(["check", "disk", "-p", str(tmp_path), "-w", "99.9", "-c", "100",
                     "--config", path]) == 0
    assert capsys.readouterr().out.startswith("DISK OK")
    assert reads == []               # the disk check never asked for its configuration
    assert cli.main(["check", "spool", "--config", path]) == 0, capsys.readouterr()
    assert reads == [path]
