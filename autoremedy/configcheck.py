"""``autoremedy config check``: validate the whole configuration, every class included."""
from autoremedy.contract.exitcodes import EXIT_BAD_INPUT, EXIT_CONFIG
from autoremedy.contract.runtime import ArgumentParser, UsageError, fail


def main(argv):
    from autoremedy.contract.registry import available, load
    from autoremedy.config import Config, ConfigError
    from autoremedy.contract.guard import Refused
    parser = ArgumentParser(prog="autoremedy config")
    parser.add_argument("action", choices=("check",))
    parser.add_argument("--config", metavar="FILE")
    try:
        args = parser.parse_args(argv)
        config = Config.load(args.config)
        notes = []
        for cls_name in config.data["remediations"]:
            if cls_name not in available("remediations"):
                raise ConfigError(f"remediations.{cls_name}: no such remediation class "
                                  f"(known: {', '.join(available('remediations'))})")
            remediation = load("remediations", cls_name).REMEDIATION(config)
            config.guards(cls_name)
            try:
                targets = remediation.allowlist()
            except Refused as exc:
                # A class whose targets come from the live system (rabbitmq-node asks the
                # broker which node it is) cannot list them offline: say so, do not fail
                # the check of a file that is valid.
                notes.append(f"note: remediations.{cls_name}: targets not checked now: {exc.reason}")
                continue
            for target in targets:
                remediation.resolve(target)
                # What a class wants the operator to know about a valid target (galera:
                # which nodes this host can prove down).
                for line in getattr(remediation, "config_notes", lambda t: [])(target):
                    notes.append(f"note: remediations.{cls_name}.targets.{target}: {line}")
        from autoremedy.pipeline.route import check_routes
        check_routes(config)
        _check_stackstorm(config)
        _check_environment()
    except UsageError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    for line in notes:
        print(line)
    print(f"{config.path or 'built-in defaults'}: OK")
    return 0


def _check_environment(environ=None):
    """What the handlers read from the environment, refused here when they
    would have to guess (they fail closed: an unclear dry-run flag is dry-run)."""
    import os
    from autoremedy.config import ConfigError, dry_run_flag
    environ = os.environ if environ is None else environ
    value = environ.get("AUTOREMEDY_DRY_RUN")
    if value and dry_run_flag(value, warn=False) and \
            value.strip().lower() not in ("1", "true", "yes", "on", "y", "enabled", "enable",
                                          "dry", "dry-run", "dryrun"):
        raise ConfigError(f"AUTOREMEDY_DRY_RUN={value[:40]!r} is neither yes nor no "
                          "(the handlers treat it as dry-run)")


def _check_stackstorm(config):
    """The StackStorm settings the handlers will use, checked the way the handlers
    check them (a URL without a scheme, e.g. ``st2.example.com``, is refused
    there: it must be refused here too)."""
    from autoremedy.config import ConfigError
    from autoremedy.pipeline.stackstorm import Client, SettingsError
    try:
        Client.from_config(config)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
