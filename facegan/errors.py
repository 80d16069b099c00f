"""User-facing errors: each message says what was wrong and what to do."""


class FaceGanError(Exception):
    """Base class for failures the user can fix; the CLI prints them and exits 2."""


class DataError(FaceGanError):
    """A data source is missing, empty or unreadable."""


class ConfigError(FaceGanError):
    """A setting is out of range or names something that does not exist."""


class CheckpointError(FaceGanError):
    """A checkpoint cannot be read or does not match the run."""
