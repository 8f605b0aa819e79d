"""imagectl's benchmark suite: ratios measured in the same run, on the real engine and registry.

Absolute times on a shared machine are noise; each benchmark compares imagectl with a baseline
measured minutes apart in the same run (raw buildx, `docker push`, `git log`, itself at n=1) and
reports the ratio against a target. Every run works in a fresh temp dir on fresh repositories
(`localhost:5000/bench/<random>/...`) and removes the local tags it made at the end.

Run it through `bench/run` (engine, registry and venv first); `--quick` shrinks every size.
One module per benchmark over `common` (running and timing things), `breakdown` (where one
imagectl run spends its time) and `report` (rows, sections, RESULTS.md); `synthetic` is the only
module that imports imagectl's internal modules.
"""
