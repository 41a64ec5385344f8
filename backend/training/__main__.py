"""Entry point: `python -m backend.training --help`."""

from backend.training.cli import main

raise SystemExit(main())
