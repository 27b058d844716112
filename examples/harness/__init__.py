"""The end-to-end harness of the reference apps: run server and packagers as processes, act as a miner, check bags.

One module per role: :mod:`~examples.harness.processes` (child processes),
:mod:`~examples.harness.seed` (database set-up), :mod:`~examples.harness.miner` (the HTTP client),
:mod:`~examples.harness.bag_validator` (our BagIt check), :mod:`~examples.harness.namespaces`
(broker-URL helpers) and :mod:`~examples.harness.stack` (all of it together). The demo and the
end-to-end, fault and fuzz suites import from here.
"""

from examples.harness.bag_validator import BagReport, validate_bag
from examples.harness.errors import DemoError
from examples.harness.miner import DumpProgress, DumpResult, Miner
from examples.harness.namespaces import unique_namespace, with_namespace
from examples.harness.processes import REPO_ROOT, Service, log_tail, read_log, start_packager, start_server
from examples.harness.seed import add_key, load_sample_theses
from examples.harness.stack import Stack, StackConfig, start_stack

__all__ = [
    "REPO_ROOT",
    "BagReport",
    "DemoError",
    "DumpProgress",
    "DumpResult",
    "Miner",
    "Service",
    "Stack",
    "StackConfig",
    "add_key",
    "load_sample_theses",
    "log_tail",
    "read_log",
    "start_packager",
    "start_server",
    "start_stack",
    "unique_namespace",
    "validate_bag",
    "with_namespace",
]
