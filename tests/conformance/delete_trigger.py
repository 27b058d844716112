"""A server's delete, as a process: ``python -m tests.conformance.delete_trigger DOCSET`` (broker: $TDM_BROKER_URL)."""

from __future__ import annotations

import os
import sys

from tdm_messaging import PackagingClient, open_transport

if __name__ == "__main__":
    with open_transport(os.environ["TDM_BROKER_URL"]) as transport:
        PackagingClient(transport).request_delete(sys.argv[1])
