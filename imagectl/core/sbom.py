"""A version's SBOM as an SPDX 2.3 JSON document, made from its recorded package manifest (pure).

SPDX rather than CycloneDX: it is the ISO/IEC 5962 standard, it is what BuildKit's own SBOM
attestations carry (so tools that read Docker's SBOMs read these), and the SPDX project's
`spdx-tools` validates it (in the tests; imagectl writes the JSON itself and needs no library).

The document describes one image: the version, named by its registry digest once published (the
image id before), and contains one package per manifest entry with its purl: `pkg:deb/<vendor>/`
for debs (the vendor from the line's `[sbom] distro`, e.g. ubuntu-24.04; without it, debs carry
no purl rather than a guessed one), `pkg:pypi/` and `pkg:conda/`. The same version always gives
the same bytes: the creation time is the version's build time, the namespace its digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

from imagectl.core.model import LockedVersion
from imagectl.core.packages import Manifest, Package, canonical_name, parse_entry
from imagectl.core.references import repository_of

MEDIA_TYPE = "application/spdx+json"
NAMESPACE_ROOT = "https://imagectl.invalid/spdx"  # .invalid: a URI that is never fetched
SPDX_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomSubject:
    """What the SBOM describes: the version and the digest that names it."""

    line: str
    repository: str
    version: LockedVersion

    @property
    def digest(self) -> str:
        return self.version.digest or self.version.image_id

    @property
    def by_registry_digest(self) -> bool:
        return bool(self.version.digest)


def spdx_document(
    subject: SbomSubject, manifest: Manifest, *, distro: str, tool: str
) -> dict[str, object]:
    version = subject.version
    image_id = "SPDXRef-Image"
    packages: list[dict[str, object]] = [_image_package(subject, image_id)]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    for index, entry in enumerate(manifest, start=1):
        package = parse_entry(entry)
        spdx_id = SPDX_ID_CHARS.sub("-", f"SPDXRef-{package.kind}-{index}-{package.name}")
        packages.append(_package(package, spdx_id, distro=distro))
        relationships.append(
            {
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": spdx_id,
            }
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{version.tag}@{subject.digest}",
        "documentNamespace": f"{NAMESPACE_ROOT}/{subject.repository}/v{version.version}/"
        f"{subject.digest.removeprefix('sha256:')}",
        "creationInfo": {
            "created": version.built_at,
            "creators": [f"Tool: {tool}"],
            "comment": f"From the package record of {subject.line} v{version.version} "
            "(dpkg status, pip and conda metadata as read after its build).",
        },
        "packages": packages,
        "relationships": relationships,
    }


def sbom_bytes(document: dict[str, object]) -> bytes:
    """The document as pushed and written: sorted keys, so one version is always one digest."""
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _image_package(subject: SbomSubject, spdx_id: str) -> dict[str, object]:
    version = subject.version
    repository = repository_of(version.tag)
    name = repository.rsplit("/", 1)[-1]
    qualifiers = f"repository_url={quote(repository, safe='/:')}&tag=v{version.version}"
    digest = quote(subject.digest, safe="")
    return {
        "SPDXID": spdx_id,
        "name": repository,
        "versionInfo": f"v{version.version}",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": subject.digest.split(":")[-1]}],
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:oci/{name}@{digest}?{qualifiers}",
            }
        ],
        "comment": "the registry's manifest digest"
        if subject.by_registry_digest
        else "the image id (config digest): this version was not published when it was made",
    }


def _package(package: Package, spdx_id: str, *, distro: str) -> dict[str, object]:
    found: dict[str, object] = {
        "SPDXID": spdx_id,
        "name": package.name,
        "versionInfo": package.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "LIBRARY" if package.kind != "deb" else "INSTALL",
    }
    purl = purl_of(package, distro=distro)
    if purl:
        found["externalRefs"] = [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }
        ]
    if package.location:
        found["comment"] = f"installed in {package.location}"
    return found


def purl_of(package: Package, *, distro: str) -> str:
    """The package URL (purl-spec) of a manifest entry; "" for a deb of an unknown distro."""
    version = quote(package.version, safe=".+~-")  # an epoch's ':' is escaped
    if package.kind == "pip":
        return f"pkg:pypi/{canonical_name(package.name)}@{version}"
    if package.kind == "conda":
        return f"pkg:conda/{quote(package.name, safe='.-_')}@{version}"
    if not distro:
        return ""
    vendor = distro.split("-", 1)[0]
    qualifiers = [f"arch={package.arch}"] if package.arch else []
    qualifiers.append(f"distro={distro}")
    return f"pkg:deb/{vendor}/{quote(package.name, safe='.+-')}@{version}?{'&'.join(qualifiers)}"
