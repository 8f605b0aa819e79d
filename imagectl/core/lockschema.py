"""What a lockfile holds: the fields of a version in their written order, which of them may be
absent or are left out when empty, and the forms of digests and pinned images."""

from __future__ import annotations

import re

# Field order in each [[versions]] table; also the order of the dataclass fields.
VERSION_FIELDS: tuple[tuple[str, type], ...] = (
    ("version", int),
    ("tag", str),
    ("increment", str),
    ("summary", str),
    ("increment_hash", str),
    ("dockerfile_hash", str),
    ("instructions_hash", str),
    ("context_hash", str),
    ("inputs_hash", str),
    ("includes", tuple),
    ("parent", str),
    ("parent_digest", str),
    ("images", tuple),
    ("image_id", str),
    ("layers", int),
    ("size", int),
    ("builder", str),
    ("engine", str),
    ("built_at", str),
    ("commit", str),
    ("digest", str),
    ("checkpoint", bool),
    ("skipped", bool),
    ("reason", str),
    ("foreign_digest", str),
    ("tests", tuple),
    ("withdrawn", bool),
    ("withdrawn_reason", str),
    ("withdrawn_by", str),
    ("withdrawn_at", str),
    ("sbom", str),
    ("archive_state", str),
    ("archive_files", int),
    ("archive_missing", int),
    ("archive", str),
)
# Fields added after schema 1 was first written are optional, so older lockfiles still read.
OPTIONAL_FIELDS = {
    "digest",
    "inputs_hash",
    "includes",
    "checkpoint",
    "instructions_hash",
    "context_hash",
    "images",
    "engine",
    "skipped",
    "reason",
    "foreign_digest",
    "tests",
    "withdrawn",
    "withdrawn_reason",
    "withdrawn_by",
    "withdrawn_at",
    "sbom",
    "archive_state",
    "archive_files",
    "archive_missing",
    "archive",
}
ARCHIVE_STATES = ("", "complete", "incomplete")
# Left out when empty: keeps ordinary versions free of `checkpoint = false` and the like.
OMITTED_WHEN_FALSE = OPTIONAL_FIELDS - {"digest"}
TEST_KEYS = ("name", "hash", "result")  # each entry of a version's `tests`, in this order
TEST_RESULTS = ("passed",)  # a version is recorded only when every test passed
# Fields that name an image or a content hash: `sha256:` and 64 hex digits, or empty. A hand-edited
# value would name another image (or none), so it is refused rather than followed.
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")  # an entry of `images`
DIGEST_FIELDS = (
    "increment_hash",
    "dockerfile_hash",
    "instructions_hash",
    "context_hash",
    "inputs_hash",
    "parent_digest",
    "image_id",
    "digest",
    "foreign_digest",
    "sbom",
    "archive",
)
HEAD_DIGEST_FIELDS = ("base_digest", "base_image_id")
