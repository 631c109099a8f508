"""Where a MySQL check connects, under the configuration its caller holds
(checks/mysql_replication.py, checks/galera.py)."""


def server_from(config, args):
    """The Server a check's options name (mysql.resolve: option file < configuration
    < options). The configuration counts only when ``--server`` needs it or a file
    was named (``--config``, $AUTOREMEDY_CONFIG): without one, a check on a host
    reads its ~/.my.cnf alone, as it always has."""
    from autoremedy.clients import mysql
    from autoremedy.lazyconfig import loaded
    name = getattr(args, "server", None)
    named = getattr(config, "explicit", True)
    return mysql.resolve(loaded(config) if (name or named) else None, name, host=args.host, port=args.port,
                         socket=args.socket, option_file=args.defaults_file, option_group=args.defaults_group,
                         tls_mode=args.tls_mode, tls_ca=args.tls_ca)
