"""Resolve the Kafka broker's jars from Maven Central into a cache outside the repository.

The cache is `$VMLB_CACHE_DIR` (default `~/.cache/vmlb`)/kafka-<version>/libs. A complete cache
is marked by a `.complete` file, so an interrupted download is redone rather than half used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import BrokerError, MissingToolError
from pipeline.topics import REPO_ROOT

#: Pinned; keep in step with <kafka.version> in docker/kafka/pom.xml.
KAFKA_VERSION = "4.1.1"
POM = REPO_ROOT / "docker" / "kafka" / "pom.xml"


def cache_dir() -> Path:
    return Path(os.environ.get("VMLB_CACHE_DIR", Path.home() / ".cache" / "vmlb"))


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}" / "libs"


def require_java() -> str:
    """The java executable (Java 17 or later), or a MissingToolError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise MissingToolError(
            "java not found: Kafka needs Java 17 or later. Install it with "
            "`apt-get install openjdk-17-jre-headless` (or any JDK 17+) and retry."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = _java_major(out)
    if major is not None and major < 17:
        raise MissingToolError(
            f"java {major} found at {java}, but Kafka {KAFKA_VERSION} needs Java 17 or later: "
            "`apt-get install openjdk-17-jre-headless`."
        )
    return java


def _java_major(version_output: str) -> int | None:
    # e.g. 'openjdk version "17.0.15" 2025-04-15' or 'java version "1.8.0_401"'
    for token in version_output.split('"')[1:2]:
        parts = token.split(".")
        try:
            return int(parts[1]) if parts[0] == "1" else int(parts[0])
        except (ValueError, IndexError):
            return None
    return None


def installed(version: str = KAFKA_VERSION) -> bool:
    """The broker's jars are complete in the cache."""
    return (libs_dir(version) / ".complete").exists()


def install(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """Make sure the broker's jars are in the cache; return the libs directory."""
    libs = libs_dir(version)
    if installed(version):
        return libs
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "mvn not found: the local Kafka broker is installed from Maven Central with Maven. "
            "Install it with `apt-get install maven` and retry."
        )
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}",
    ]
    if quiet:
        command.insert(2, "-q")
    result = subprocess.run(command, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = (result.stdout or "")[-2000:] if quiet else ""
        raise BrokerError(
            f"Maven could not resolve Kafka {version} (exit {result.returncode}).\n{detail}"
        )
    if not any(staging.glob(f"kafka_2.13-{version}.jar")):
        raise BrokerError(f"Maven finished but kafka_2.13-{version}.jar is not in {staging}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").write_text(version + "\n")
    return libs


def classpath(version: str = KAFKA_VERSION) -> str:
    return str(libs_dir(version) / "*")
