"""vmlb's topics: declared in topics.yaml (`spec`), applied to a cluster (`admin`), read (`reader`).

Producers, guests and the worker import topic names only from here (`Topics.name()`).
"""

from pipeline.topics.admin import (
    TABLES,
    Action,
    ReplicationError,
    TopicReport,
    apply_topics,
    as_deployed,
    changelog_specs,
    ensure_topic,
    leader_topic_spec,
    replication_factor,
    worker_topic_specs,
)
from pipeline.topics.spec import (
    DEFAULT_TOPICS_FILE,
    REPO_ROOT,
    REQUIRED_TOPICS,
    Topics,
    TopicSpec,
    load_topics,
    topics_of,
)

__all__ = [
    "DEFAULT_TOPICS_FILE",
    "REPO_ROOT",
    "REQUIRED_TOPICS",
    "TABLES",
    "Action",
    "ReplicationError",
    "TopicReport",
    "TopicSpec",
    "Topics",
    "apply_topics",
    "as_deployed",
    "changelog_specs",
    "ensure_topic",
    "leader_topic_spec",
    "load_topics",
    "replication_factor",
    "topics_of",
    "worker_topic_specs",
]
