"""Entry point for `python -m imagectl`."""

from imagectl.cli import main

raise SystemExit(main())
