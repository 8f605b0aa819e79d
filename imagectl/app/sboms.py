"""`imagectl sbom`: a version's SPDX document from its lock and package record (no engine)."""

from __future__ import annotations

from pathlib import Path

from imagectl import __version__
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.results.lookup import SbomMade
from imagectl.core import sidecar
from imagectl.core.errors import PlanError
from imagectl.core.files import ReplaceError, replace_durably
from imagectl.core.model import ImageLine, Lock, LockedVersion
from imagectl.core.packages import Manifest, parse_entry
from imagectl.core.sbom import SbomSubject, sbom_bytes, spdx_document


def version_sbom(project: Project, name: str, number: int | None) -> SbomMade:
    line = project.line(name)
    lock = line_lock(project, line)
    version = _version(line, lock, number)
    path = sidecar.packages_path(project.layout.lock_path(line.name))
    record = sidecar.read_packages(path)
    if not record.complete(version.version):
        raise PlanError(
            f"{line.name} v{version.version} has no complete package record in "
            f"{path.name}: it was built before imagectl recorded packages, or the record is "
            "gone.",
            hint="Restore lock/ from git; a version without a record has no SBOM to make.",
        )
    return made_sbom(line, record.manifest(version.version), version)


def made_sbom(line: ImageLine, manifest: Manifest, version: LockedVersion) -> SbomMade:
    """The SBOM of `version` from its manifest: what `sbom` prints and what `publish` attaches
    (the same bytes)."""
    warnings: tuple[str, ...] = ()
    if not line.sbom_distro and any(parse_entry(entry).kind == "deb" for entry in manifest):
        warnings = (
            f"{line.name}: its debs get no purl: say which distribution they are from with "
            f'[sbom] distro = "ubuntu-24.04" (ID-VERSION_ID of its os-release) in '
            f"{line.config_path.as_posix()}",
        )
    subject = SbomSubject(line=line.name, repository=line.repository, version=version)
    document = spdx_document(
        subject, manifest, distro=line.sbom_distro, tool=f"imagectl-{__version__}"
    )
    return SbomMade(
        line=line.name,
        version=version,
        data=sbom_bytes(document),
        packages=len(manifest),
        warnings=warnings,
    )


def _version(line: ImageLine, lock: Lock, number: int | None) -> LockedVersion:
    built = lock.built_versions
    if not built:
        raise PlanError(
            f"{line.name} has no built version yet.",
            hint=f"Build one first: imagectl build next {line.name}.",
        )
    if number is None:
        return built[-1]
    found = next((v for v in lock.versions if v.version == number), None)
    if found is None or found.skipped:
        why = "was skipped (its tag was burned): it has no image" if found else "is not built"
        raise PlanError(
            f"v{number} of {line.name} {why}.",
            hint=f"See `imagectl history {line.name}`; built versions are "
            f"v{built[0].version}-v{built[-1].version}.",
        )
    return found


def write_sbom(made: SbomMade, out: Path) -> None:
    """Written whole or not at all (core/files)."""
    if out.is_dir():
        raise PlanError(
            f"--out {out} is a folder.", hint="Name the file to write, e.g. --out v3.spdx.json."
        )
    try:
        replace_durably(out, lambda handle: handle.write(made.data))
    except ReplaceError as exc:
        raise PlanError(
            f"cannot write {out} ({exc.strerror}).",
            hint="Check that its folder exists and is writable; nothing was written.",
        ) from exc
