"""warrenmq.logstore: a durable, partitioned, append-only log that knows nothing of AMQP.

LogManager (one data directory) -> Topic -> PartitionLog -> LogSegment, with
an OffsetsStore (compacted key -> value log) for consumer positions. See
docs/architecture.md and docs/storage.md.
"""

from .commit import GroupCommitter
from .config import LogConfig
from .errors import CorruptBatchError, LogClosedError, LogstoreError, OffsetOutOfRangeError
from .log import PartitionLog
from .manager import LogManager, TopicExistsError
from .names import escape_name, unescape_name
from .offsets import OffsetsStore
from .records import Record
from .segment import LogSegment
from .stats import Histogram, LogStats
from .topic import Topic

__all__ = [
    "CorruptBatchError",
    "GroupCommitter",
    "Histogram",
    "LogClosedError",
    "LogConfig",
    "LogManager",
    "LogStats",
    "LogSegment",
    "LogstoreError",
    "OffsetOutOfRangeError",
    "OffsetsStore",
    "PartitionLog",
    "Record",
    "Topic",
    "TopicExistsError",
    "escape_name",
    "unescape_name",
]
