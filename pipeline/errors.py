"""The root of every error vmlb raises on purpose.

Each error names what was at fault (a topic, a key, a field, a setting) so that the message alone
tells an operator what to change. The CLI prints these without a traceback.
"""


class VmlbError(Exception):
    """Something the user can fix: bad input, bad configuration, a missing tool."""


class ConfigError(VmlbError):
    """A setting or a configuration file is invalid."""


class TopicsFileError(ConfigError):
    """topics.yaml is malformed or declares something invalid."""


class BrokerError(VmlbError):
    """The local broker could not be installed, started or reached."""


class MissingToolError(BrokerError):
    """A program the local broker needs (java, mvn) is not installed."""


class EventError(VmlbError):
    """An event failed validation; the message names the field."""


class RowError(VmlbError):
    """A stored table row is unreadable (an unknown version, a missing or mistyped field)."""
