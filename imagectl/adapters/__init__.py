"""One adapter per outside system (the engine, the registry, git, processes).

Each returns imagectl's own types, never a library object."""
