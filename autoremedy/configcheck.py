"""``autoremedy config check``: validate the whole configuration, every class included."""
from autoremedy.runtime import ArgumentParser, UsageError, fail


def main(argv):
    from autoremedy.cli import available, load
    from autoremedy.config import Config, ConfigError
    parser = ArgumentParser(prog="autoremedy config")
    parser.add_argument("action", choices=("check",))
    parser.add_argument("--config", metavar="FILE")
    try:
        args = parser.parse_args(argv)
        config = Config.load(args.config)
        for cls_name in config.data["remediations"]:
            if cls_name not in available("remediations"):
                raise ConfigError(f"remediations.{cls_name}: no such remediation class "
                                  f"(known: {', '.join(available('remediations'))})")
            remediation = load("remediations", cls_name).REMEDIATION(config)
            config.guards(cls_name)
            for target in remediation.allowlist():
                remediation.resolve(target)
        from autoremedy.route import check_routes
        check_routes(config)
    except UsageError as exc:
        return fail(str(exc), 2)
    except ConfigError as exc:
        return fail(str(exc), 3)
    print(f"{config.path or 'built-in defaults'}: OK")
    return 0
