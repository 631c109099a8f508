"""The configuration a command names, read on first use and at most once.

What ``autoremedy check`` passes to a check's ``probe(config, options)``
(autoremedy/contract/checkrun.py): most checks never read the YAML (PyYAML alone is
~20 ms of a node check's start-up), the ones that do read it through this
object, and `check batch` hands the same one to every check it runs. Its own
module so that a check that never reads its configuration does not import
autoremedy/config.py (its schema) either: bench/bench_node.py.
"""
import os


class Deferred:
    """A Config loaded on first use. Attribute access is the loaded Config's; a
    load that fails raises the same ConfigError on every use."""

    def __init__(self, path=None, environ=None, loaded=None):
        self._path = path
        self._environ = os.environ if environ is None else environ
        self._loaded = loaded       # a Config the caller read already (the node hook)
        self._error = None

    @property
    def explicit(self):
        """Whether a file was named (``--config`` or $AUTOREMEDY_CONFIG), not just
        the default path: the MySQL checks read the YAML only then or for --server."""
        return bool(self._path or self._environ.get("AUTOREMEDY_CONFIG"))

    def load(self):
        if self._loaded is None:
            if self._error is not None:
                raise self._error
            from autoremedy.config import Config, ConfigError
            try:
                self._loaded = Config.load(self._path, self._environ)
            except ConfigError as exc:
                self._error = exc
                raise
        return self._loaded

    @property
    def state_dir(self):
        """config.state_dir(): the environment's when it names one, the default
        when no file is named or present, else the file's (read then)."""
        if self._loaded is None:
            from autoremedy.config import DEFAULT_PATH, DEFAULT_STATE_DIR
            if self._environ.get("AUTOREMEDY_STATE_DIR"):
                return self._environ["AUTOREMEDY_STATE_DIR"]
            if not self.explicit and not os.path.exists(DEFAULT_PATH):
                return DEFAULT_STATE_DIR
        return self.load().state_dir

    def __getattr__(self, name):
        if name.startswith("_"):        # never load for a probe of our own attributes (copy, pickle)
            raise AttributeError(name)
        return getattr(self.load(), name)


def loaded(config):
    """The Config itself, from a Config or a Deferred one (loading it if needed)."""
    return config.load() if isinstance(config, Deferred) else config
