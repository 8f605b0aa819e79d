"""Entry point for `python -m imagectl`."""

from imagectl.start import main

raise SystemExit(main())
