"""Errors the log raises; callers (the broker) map them to protocol answers."""


class LogstoreError(Exception):
    """Base class for every error of the log."""


class OffsetOutOfRangeError(LogstoreError):
    """An offset below the log start (deleted by retention) was asked for."""

    def __init__(self, offset: int, log_start: int, log_end: int) -> None:
        super().__init__(f"offset {offset} is out of range [{log_start}, {log_end})")
        self.offset = offset
        self.log_start = log_start
        self.log_end = log_end


class CorruptBatchError(LogstoreError):
    """A record batch failed its checks (length, offsets, CRC or record layout)."""


class LogClosedError(LogstoreError):
    """The log was used after close()."""
