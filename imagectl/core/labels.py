"""The labels every version carries (pure): OCI's `org.opencontainers.image.*` keys and
imagectl's own, set at build time (`docker build --label`), never written into an increment.

Drift protection hashes an increment's text, so a label written there would make every built
version drift. Labels are inherited through FROM: each version sets every key again, so that no
value of its parent's stays. `created` is the commit time of the increment (the epoch for an
uncommitted one), never the clock: a rerun after a crash builds the very same image.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from imagectl.core.model import LockedVersion

OCI = "org.opencontainers.image"
VERSION = f"{OCI}.version"
REVISION = f"{OCI}.revision"
SOURCE = f"{OCI}.source"
CREATED = f"{OCI}.created"
BASE_NAME = f"{OCI}.base.name"
BASE_DIGEST = f"{OCI}.base.digest"
REF_NAME = f"{OCI}.ref.name"
TITLE = f"{OCI}.title"
LINE = "imagectl.line"
LINE_VERSION = "imagectl.version"
INCREMENT = "imagectl.increment"
# Every key imagectl sets on every version, in the order it passes them.
LABEL_KEYS = (VERSION, REVISION, SOURCE, CREATED, BASE_NAME, BASE_DIGEST, REF_NAME, TITLE,
              LINE, LINE_VERSION, INCREMENT)  # fmt: skip
EPOCH = "1970-01-01T00:00:00Z"  # `created` of a version built from an uncommitted increment
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>[^/\s].*)$")  # git@host:org/x


def version_labels(
    *,
    line: str,
    version: int,
    tag: str,
    increment: str,
    revision: str,
    created: str,
    source: str,
    base_name: str,
    base_digest: str,
) -> dict[str, str]:
    """Every label of one version; an unknown value is "", which still replaces the parent's."""
    return {
        VERSION: f"v{version}",
        REVISION: revision,
        SOURCE: source,
        CREATED: created,
        BASE_NAME: base_name,
        BASE_DIGEST: base_digest,
        REF_NAME: tag,
        TITLE: line,
        LINE: line,
        LINE_VERSION: str(version),
        INCREMENT: increment,
    }


def revision_of(commit: str) -> str:
    """The commit a label may name: a full commit id; "" for "uncommitted" or none."""
    return commit if COMMIT.match(commit) else ""


def recorded_labels(line: str, version: LockedVersion) -> dict[str, str]:
    """The labels of a built version that its lock entry alone determines (not `created`, the
    commit's time, nor `source`, the repository's URL): what the reference lists."""
    labels = version_labels(
        line=line,
        version=version.version,
        tag=version.tag,
        increment=version.increment,
        revision=revision_of(version.commit),
        created="",
        source="",
        base_name=version.parent,
        base_digest=version.parent_digest,
    )
    del labels[CREATED], labels[SOURCE]
    return labels


def source_url(remote: str) -> str:
    """`org.opencontainers.image.source` from a git remote: a web URL without credentials,
    query or `.git` (what Renovate, Dependabot and Snyk follow); "" for a local path."""
    text = remote.strip()
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname or parts.scheme == "file":
            return ""
        web = parts.scheme in ("http", "https")
        port = f":{parts.port}" if parts.port and web else ""
        host, path = f"{parts.hostname}{port}", parts.path
        scheme = parts.scheme if web else "https"
    else:
        scp = SCP_LIKE.match(text)
        if scp is None:
            return ""  # a path on this machine means nothing to anyone else
        scheme, host, path = "https", scp.group("host"), "/" + scp.group("path")
    path = path.rstrip("/").removesuffix(".git")
    return f"{scheme}://{host}{path}"
