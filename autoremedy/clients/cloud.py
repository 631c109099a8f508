"""The OpenStack connection, built lazily from clouds.yaml or the ``openstack:`` section.

openstacksdk costs 0.6-1.3 s of imports (measured with `python3 -X importtime -c 'import openstack'`; bench/bench_imports.py), so nothing
here imports it at module level: only ``connect()`` does, on the code paths that
talk to the cloud. Node checks never import this module's callers.

Configuration (validated here: the core schema leaves ``openstack:`` free-form)::

    openstack:
      cloud: prod                      # an entry of clouds.yaml ...
      clouds_yaml: /etc/autoremedy/clouds.yaml   # ... read from this file (default: the
                                       # SDK's search path, OS_CLIENT_CONFIG_FILE included)
      # or, instead of cloud:, inline v3 password credentials:
      # auth: {auth_url: https://keystone:5000/v3, username: autoremedy,
      #        password_file: /etc/autoremedy/os-password, project_name: admin,
      #        user_domain_name: Default, project_domain_name: Default}
      region: RegionOne
      interface: internal
      verify: true                     # or a CA bundle path
      timeout: 30s                     # per API call
      compute_microversion: "2.53"     # pinned, like Masakari: force-down via PUT
                                       # /os-services/{id}, evacuate without force, and an
                                       # evacuated VM keeps its state (2.95 would stop it)
      compute:                         # used by the compute-node check and remediation
        max_down_share: 0.34           # more computes down than this share = a partition
        probe: {icmp: true, tcp_ports: [22], timeout: 2s}
        ipmi: {interface: lanplus, user: admin, password_file: /etc/autoremedy/ipmi.pw,
               address: "{host}-ipmi"} # BMC address pattern; per host below overrides
        hosts:
          cmp1: {address: 10.0.0.11, ipmi: {address: 10.1.0.11}}
      sensu:                           # keepalive events (Sensu Go API)
        url: https://sensu-backend:8080
        namespace: default
        entity: "{host}"               # the Sensu entity name of a compute host
        api_key_file: /etc/autoremedy/sensu.key
        verify: true
"""
from autoremedy import config as configmod

DEFAULT_MICROVERSION = "2.53"

_PROBE = {"icmp": bool, "tcp_ports": configmod.List(int), "timeout": configmod.Duration}
_IPMI = {"interface": str, "user": str, "password_file": str, "address": str,
         "enabled": bool, "timeout": configmod.Duration}

SCHEMA = {
    "cloud": str,
    "clouds_yaml": str,
    "auth": {"auth_url": str, "username": str, "password_file": str, "project_name": str,
             "project_id": str, "user_domain_name": str, "project_domain_name": str,
             "user_domain_id": str, "project_domain_id": str},
    "auth_type": str,
    "region": str,
    "interface": str,
    "verify": (bool, str),
    "timeout": configmod.Duration,
    "compute_microversion": (str, float),
    "compute": {
        "max_down_share": configmod.Number,
        "probe": _PROBE,
        "ipmi": _IPMI,
        "hosts": configmod.Map({"address": str, "probe": _PROBE, "ipmi": _IPMI}),
    },
    "sensu": {"url": str, "namespace": str, "api_key_file": str, "verify": (bool, str),
              "timeout": configmod.Duration, "entity": str},
    "consistency": configmod.Any,      # validated by checks/openstack_consistency.py
}

DEFAULTS = {
    "timeout": 30.0,
    "compute_microversion": DEFAULT_MICROVERSION,
    "compute": {
        "max_down_share": 0.34,
        "probe": {"icmp": True, "tcp_ports": [22], "timeout": 2.0},
        "ipmi": {"interface": "lanplus", "enabled": True, "timeout": 15.0},
        "hosts": {},
    },
    "sensu": {"namespace": "default", "verify": True, "timeout": 5.0, "entity": "{host}"},
}


class CloudError(Exception):
    """The cloud cannot be reached or answered unusably; the text says why in one line."""


def settings(config):
    """The validated ``openstack:`` section merged over the defaults."""
    merged = configmod.section(config, "openstack", SCHEMA, DEFAULTS)
    merged["compute_microversion"] = str(merged["compute_microversion"])
    if not merged.get("cloud") and not merged.get("auth"):
        merged.setdefault("cloud", "envvars")   # OS_* variables, as `openstack` does
    return merged


def host_settings(osconf, host):
    """Probe and IPMI settings for one compute host (global defaults < per-host)."""
    compute = osconf["compute"]
    own = compute["hosts"].get(host) or {}
    probe = configmod.merge(compute["probe"], own.get("probe") or {})
    ipmi = configmod.merge(compute["ipmi"], own.get("ipmi") or {})
    if ipmi.get("address"):
        ipmi["address"] = ipmi["address"].replace("{host}", host)
    ipmi["configured"] = bool(ipmi.get("enabled") and ipmi.get("address") and ipmi.get("user"))
    return {"address": own.get("address") or host, "probe": probe, "ipmi": ipmi}


def _read_secret(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise configmod.ConfigError(f"openstack.{what} {path}: {exc.strerror}") from None


def connect(config, concurrency=1):
    """An openstacksdk Connection for the configured cloud (imports the SDK).

    ``concurrency`` sizes the HTTP connection pool so that N worker threads keep
    their keep-alive connections instead of opening a new one per call.
    """
    osconf = settings(config)
    _quiet_sdk_warnings()
    try:
        import openstack
        import openstack.config
        from openstack import exceptions as sdkexc
        from keystoneauth1 import exceptions as ksexc
    except ImportError:
        raise configmod.ConfigError("openstacksdk is not installed "
                                    "(pip install 'autoremedy[openstack]')") from None
    common = {"api_timeout": osconf["timeout"],
              "compute_default_microversion": osconf["compute_microversion"]}
    if osconf.get("region"):
        common["region_name"] = osconf["region"]
    if osconf.get("interface"):
        common["interface"] = osconf["interface"]
    if "verify" in osconf:
        common["verify"] = osconf["verify"]
    try:
        if osconf.get("auth"):
            auth = dict(osconf["auth"])
            if "password_file" in auth:
                auth["password"] = _read_secret(auth.pop("password_file"), "auth.password_file")
            conn = openstack.connect(auth_type=osconf.get("auth_type", "v3password"), auth=auth,
                                     load_yaml_config=False, load_envvars=False, **common)
        elif osconf["cloud"] == "envvars":
            conn = openstack.connect(load_yaml_config=False, **common)
        else:
            files = [osconf["clouds_yaml"]] if osconf.get("clouds_yaml") else None
            if files:
                import os
                if not os.path.exists(files[0]):
                    raise configmod.ConfigError(f"openstack.clouds_yaml {files[0]}: no such file")
            loader = openstack.config.OpenStackConfig(config_files=files, load_envvars=False)
            region = loader.get_one(cloud=osconf["cloud"], **common)
            conn = openstack.connection.Connection(config=region)
    except (sdkexc.SDKException, ksexc.ClientException) as exc:
        # e.g. no auth_url anywhere: a configuration problem, said in one line
        raise configmod.ConfigError(f"openstack: cannot build the connection: {describe(exc)}") from None
    if concurrency > 1:
        _widen_pool(conn, concurrency)
    return conn


def _quiet_sdk_warnings():
    """The SDK warns about deprecated fields and its own future on stderr, which
    Zabbix would merge into the item value; our output is the result, not these."""
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"openstack(\.|$)")
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=r"openstack(\.|$)")
    try:
        from openstack import warnings as oswarnings
    except ImportError:
        return
    for kind in (oswarnings.OpenStackDeprecationWarning, oswarnings._RemovedInSDKWarning,
                 oswarnings.OpenStackWarning):
        warnings.simplefilter("ignore", kind)


def _widen_pool(conn, size):
    from requests.adapters import HTTPAdapter
    session = conn.session.session
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, size + 2))
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def _one_line(exc):
    return " ".join(str(exc).split())[:400]


def describe(exc):
    """One line for an SDK/keystoneauth error: HTTP status and Nova's message."""
    status = getattr(exc, "status_code", None)
    text = _one_line(getattr(exc, "details", None) or exc)
    kind = type(exc).__name__
    return f"{kind} ({status}): {text}" if status else f"{kind}: {text}"


def guarded(what):
    """Context manager turning SDK/transport failures into CloudError(one line)."""
    import contextlib

    @contextlib.contextmanager
    def wrap():
        from keystoneauth1 import exceptions as ksexc
        from openstack import exceptions as sdkexc
        try:
            yield
        except (sdkexc.SDKException, ksexc.ClientException) as exc:
            raise CloudError(f"{what}: {describe(exc)}") from None
    return wrap()
