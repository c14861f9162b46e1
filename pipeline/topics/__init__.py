"""vmlb's topics: declared in topics.yaml (`spec`), applied to a cluster (`admin`), read (`reader`).

Producers, guests and the worker import topic names only from here (`Topics.name()`).
"""

from pipeline.topics.admin import (
    TABLES,
    Action,
    TopicReport,
    apply_topics,
    changelog_specs,
    ensure_topic,
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
    "TopicReport",
    "TopicSpec",
    "Topics",
    "apply_topics",
    "changelog_specs",
    "ensure_topic",
    "load_topics",
    "topics_of",
]
