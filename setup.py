"""autoremedy: one build file (the design card's layout).

checks/, handlers/ and remediations/ sit at the top of the repository and install
under the autoremedy namespace (package_dir), so nothing with a generic name lands
in site-packages. Only one command lands on PATH: ``autoremedy``. Every check,
handler and remediation is also an entry point (groups autoremedy.checks,
autoremedy.handlers, autoremedy.remediations), generated from the modules present.
"""
import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    with open(os.path.join(HERE, "autoremedy", "__init__.py")) as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def modules(folder):
    names = sorted(f[:-3] for f in os.listdir(os.path.join(HERE, folder))
                   if f.endswith(".py") and not f.startswith("_"))
    return [f"{n.replace('_', '-')} = autoremedy.{folder}.{n}" for n in names]


def readme():
    path = os.path.join(HERE, "README.md")
    return open(path, encoding="utf-8").read() if os.path.exists(path) else ""


setup(
    name="autoremedy",
    version=version(),
    description="Self-healing for OpenStack clouds: Sensu/Zabbix checks, StackStorm forwarding, guarded local remediation",
    long_description=readme(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=["autoremedy", "autoremedy.contract", "autoremedy.pipeline", "autoremedy.clients", "autoremedy.collection",
              "autoremedy.pipeline.sources", "autoremedy.checks", "autoremedy.handlers",
              "autoremedy.remediations"],
    package_dir={
        "autoremedy": "autoremedy",
        "autoremedy.checks": "checks",
        "autoremedy.handlers": "handlers",
        "autoremedy.remediations": "remediations",
    },
    # Runtime dependencies: why each one, and where it is kept off a path, is in
    # README.md ("Dependencies").
    install_requires=[
        "psutil>=5.9,<8",
        "PyYAML>=5.4,<7",
        "requests>=2.28,<3",
        "urllib3>=1.26,<3",      # used directly by the RabbitMQ management API client
        "pika>=1.3,<2",
        "PyMySQL>=1.0,<2",
        "drain3>=0.9.11,<0.10",  # log signatures of `autoremedy collect` (Drain), imported only there
    ],
    extras_require={
        "openstack": ["openstacksdk>=1.0,<5"],
        "zabbix": ["pyzabbix>=1.3,<2"],
        "sensu": ["sensu-plugin>=0.8,<0.9"],
        # oslo.messaging + oslo.config: the real RPC traffic of tests/rabbitmq/oslo_traffic.py
        "test": ["pytest>=7,<9", "pytest-xdist>=3.5,<4", "hypothesis>=6.80,<7", "openstacksdk>=1.0,<5", "pyzabbix>=1.3,<2",
                 "sensu-plugin>=0.8,<0.9", "oslo.messaging>=14.0,<19", "oslo.config>=9.0,<11",
                 "tooz>=6.0,<10", "redis>=4.5,<9",
                 "ruff>=0.8,<1"],     # make lint (ruff.toml)
        "bench": ["openstacksdk>=1.0,<5", "tooz>=6.0,<10", "redis>=4.5,<9"],
        # guards across hosts (autoremedy.clients.coordination): tooz + redis for a Redis
        # backend; MySQL/MariaDB through PyMySQL (already required) and etcd
        # through its JSON gateway over http.client (the standard library) need
        # nothing more
        "fleet": ["tooz>=6.0,<10", "redis>=4.5,<9"],
    },
    entry_points={
        "console_scripts": ["autoremedy = autoremedy.cli:main"],
        "autoremedy.checks": modules("checks"),
        "autoremedy.handlers": modules("handlers"),
        "autoremedy.remediations": modules("remediations"),
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Environment :: OpenStack",
        "Topic :: System :: Monitoring",
    ],
)
