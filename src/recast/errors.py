"""One exception family, so the CLI can print a clear message instead of a traceback."""


class RecastError(Exception):
    """Base for every error recast reports to a user."""


class ConfigError(RecastError):
    """params.yaml or a --set override is wrong (unknown key, bad value)."""


class DataError(RecastError):
    """Raw or processed data is malformed; the message names the file, record and field."""


class ValidationFailed(DataError):
    """A Great Expectations suite failed; nothing downstream may run on that data."""


class ModelError(RecastError):
    """A model spec cannot be resolved, fetched or loaded."""


class GeneratorError(RecastError):
    """The black-box generator failed (dead endpoint, bad response) after its retries."""
