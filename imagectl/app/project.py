"""The image repository a command works on, resolved once: where its parts are, its settings
(`imagectl.toml`, read and validated up front), its lines, and the adapters to the engine, the
registry and git. The CLI builds one Project; every workflow receives it."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imagectl.core.config import RepositoryLayout, find_repository, load_lines, select_lines
from imagectl.core.errors import ConfigError
from imagectl.core.model import ImageLine

if TYPE_CHECKING:
    from imagectl.adapters.docker_engine import DockerBuilder, DockerImages
    from imagectl.core.ports import (
        Adapters,
        CiGit,
        Git,
        ImageBuilder,
        ImageStore,
        Inputs,
        Registry,
    )

SETTINGS_FILE = "imagectl.toml"
# table -> key -> (type, what it is, the Settings field): everything imagectl.toml may set.
SETTINGS_KEYS: dict[str, dict[str, tuple[type, str, str]]] = {
    "build": {
        "builder": (
            str,
            "the buildx builder to build with (docker buildx build --builder)",
            "builder",
        ),
    },
    "tests": {
        "jobs": (int, "how many tests of one version run at once (default 4)", "test_jobs"),
    },
    "labels": {
        "source": (
            str,
            "the org.opencontainers.image.source label (default: the git remote's URL)",
            "label_source",
        ),
    },
}
TEST_JOBS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The repository's own settings; every key is optional."""

    builder: str = ""  # a named buildx builder; "" is docker's current one
    test_jobs: int = TEST_JOBS  # tests of one version run side by side, at most this many
    label_source: str = ""  # org.opencontainers.image.source; "" takes the git remote's URL


@dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    """One image repository: its layout, settings, lines and adapters."""

    layout: RepositoryLayout
    settings: Settings
    lines: tuple[ImageLine, ...]
    adapters: Adapters = field(repr=False)

    @property
    def root(self) -> Path:
        return self.layout.root

    def select(self, names: Sequence[str]) -> tuple[ImageLine, ...]:
        """The named lines (all for none); an unknown name is a ConfigError naming the known."""
        return select_lines(self.lines, list(names))

    def line(self, name: str) -> ImageLine:
        (line,) = select_lines(self.lines, [name])
        return line

    def reopened(self) -> Project:
        """The same repository read again (after git changed it), with the same adapters."""
        layout = find_repository(self.root)
        return Project(
            layout=layout,
            settings=read_settings(layout.root / SETTINGS_FILE),
            lines=load_lines(layout),
            adapters=self.adapters,
        )


def open_project(
    directory: Path,
    *,
    builder_name: str | None = None,
    builder: ImageBuilder | None = None,
    images: ImageStore | None = None,
    registry: Registry | None = None,
    git: Git | None = None,
) -> Project:
    """Find the repository at or above `directory` and read what every command needs."""
    layout = find_repository(directory)
    settings = read_settings(layout.root / SETTINGS_FILE)
    if builder_name is not None:
        named, origin = builder_name, "--builder"
    else:
        named, origin = settings.builder, f"[build] builder in {SETTINGS_FILE}"
    adapters = _Adapters(
        layout.root, named, origin, builder=builder, images=images, registry=registry, git=git
    )
    return Project(layout=layout, settings=settings, lines=load_lines(layout), adapters=adapters)


def read_settings(path: Path) -> Settings:
    """`imagectl.toml`, validated: unknown tables or keys and wrong types are refused."""
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(
            f"is not valid TOML ({exc}).", hint="Fix the syntax.", path=path.name
        ) from exc
    values: dict[str, object] = {}
    for table, entries in data.items():
        known = SETTINGS_KEYS.get(table)
        if known is None or not isinstance(entries, dict):
            raise ConfigError(
                f"has an unknown table [{table}].",
                hint=f"Known tables: {', '.join(f'[{t}]' for t in SETTINGS_KEYS)}.",
                path=path.name,
            )
        for key, value in entries.items():
            if key not in known:
                raise ConfigError(
                    f"[{table}] has an unknown key {key!r}.",
                    hint="Known keys: "
                    + "; ".join(f"{k} ({what})" for k, (_, what, _) in known.items())
                    + ".",
                    path=path.name,
                )
            kind, what, name = known[key]
            values[name] = _setting(f"[{table}] {key}", value, kind, what, path=path)
    return Settings(**values)  # type: ignore[arg-type]


def _setting(where: str, value: object, kind: type, what: str, *, path: Path) -> object:
    """One value of imagectl.toml, checked: a non-empty string, or a whole number from 1."""
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{where} must be a whole number of at least 1: {what}.", path=path.name)
    if kind is str and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where} must be a non-empty string: {what}.", path=path.name)
    if where == "[labels] source" and "@" in urlsplit(str(value)).netloc:
        raise ConfigError(
            f"{where} names a user or credentials in its URL; every image would carry them.",
            hint="Give the repository's web URL without user or token, e.g. "
            '"https://github.com/org/images".',
            path=path.name,
        )
    return value


class _Adapters:
    """The adapters, each made on first use: a command that reads files only (plan, history,
    resolve) never loads the engine, registry or git modules. Given ones (tests) win."""

    def __init__(
        self,
        root: Path,
        named: str,
        origin: str,
        *,
        builder: ImageBuilder | None,
        images: ImageStore | None,
        registry: Registry | None,
        git: Git | None,
    ) -> None:
        self._root, self._named, self._origin = root, named, origin
        self._given_builder, self._given_images = builder, images
        self._given_registry, self._given_git = registry, git

    @functools.cached_property
    def _docker(self) -> tuple[DockerBuilder, DockerImages]:
        from imagectl.adapters.docker_engine import DockerBuilder, DockerImages  # noqa: PLC0415

        docker_builder = DockerBuilder(named=self._named, origin=self._origin)
        return docker_builder, DockerImages(docker_builder)

    @functools.cached_property
    def builder(self) -> ImageBuilder:
        return self._given_builder or self._docker[0]

    @functools.cached_property
    def images(self) -> ImageStore:
        return self._given_images or self._docker[1]

    @functools.cached_property
    def registry(self) -> Registry:
        if self._given_registry is not None:
            return self._given_registry
        from imagectl.adapters.registry import RegistryClient  # noqa: PLC0415

        return RegistryClient(push=self._docker[1].push)

    @functools.cached_property
    def git(self) -> Git:
        if self._given_git is not None:
            return self._given_git
        from imagectl.adapters.git_repo import GitRepository  # noqa: PLC0415

        return GitRepository(self._root)

    @functools.cached_property
    def inputs(self) -> Inputs:
        from imagectl.adapters.inputs import InputsAdapter  # noqa: PLC0415

        return InputsAdapter()

    def ci_git(self) -> CiGit:
        """The CI job's git: commits, fetches, rebases and pushes this work tree."""
        from imagectl.adapters.git_repo import GitRepository  # noqa: PLC0415

        return GitRepository(self._root)
