"""Run a Nova service as its console script does, first report after ``report_interval``.

    python realnova_service.py nova-compute --config-file ... --log-file ...

``nova-compute``, ``nova-conductor`` and ``nova-scheduler`` are ``nova.cmd.<name>:main``
(the venv's ``bin/nova-*`` scripts hold nothing else). The one difference: a service's
first heartbeat waits ``nova.servicegroup.api.INITIAL_REPORTING_DELAY``, a fixed 5 s
(a module constant, not a configuration option), before ``report_interval`` takes
over. The harness reports every second (realnova.py), so a restarted nova-compute
would show "down" for 5 s after it already serves; every restart in the suite paid
it. Here the first report comes after ``report_interval`` like every later one.
"""
import importlib
import os
import sys


def main():
    binary = sys.argv[1]
    sys.argv = [os.path.join(os.path.dirname(sys.executable), binary)] + sys.argv[2:]
    from nova.servicegroup import api
    api.INITIAL_REPORTING_DELAY = int(os.environ.get("REALNOVA_REPORT_INTERVAL", "1"))
    module = importlib.import_module("nova.cmd." + binary[len("nova-"):])
    sys.exit(module.main())


if __name__ == "__main__":
    main()
