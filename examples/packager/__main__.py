"""Entry point: ``python -m examples.packager --help``."""

from examples.packager.app import main

raise SystemExit(main())
