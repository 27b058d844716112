"""``python -m tdm_messaging``: the ``tdm-messaging`` command line."""

from tdm_messaging.cli import main

raise SystemExit(main())
