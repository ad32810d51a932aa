"""Errors that name what the user has to fix (a file, a channel, a config key)."""


class BaristaError(Exception):
    """Base class for every error barista raises on bad input."""


class ConfigError(BaristaError):
    """A configuration value is missing, of the wrong type or inconsistent."""


class DataError(BaristaError):
    """An input file is missing, unreadable or inconsistent with another one."""


class DownloadError(BaristaError):
    """A remote file could not be fetched or failed verification."""


class OutputError(BaristaError):
    """An output file could not be written (a full disk, no permission)."""
