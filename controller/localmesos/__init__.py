"""An embedded Mesos 1.11-compatible master and agents, speaking the v1 scheduler HTTP API.

It is the Mesos of `docket up` and of every test: real-mode agents run command tasks as
local processes with sandboxes; simulated agents carry thousands of hollow tasks; fault hooks
lose agents, partition them, restart the master and tamper with status updates. Wherever it
differs from Mesos' documented behaviour, it is wrong.
"""

from controller.localmesos.cluster import LocalMesos, LocalMesosConfig
from controller.localmesos.master import TERMINAL_STATES, Master, MasterConfig, validate_id
from controller.localmesos.resources import Resources

__all__ = ["TERMINAL_STATES", "LocalMesos", "LocalMesosConfig", "Master", "MasterConfig",
           "Resources", "validate_id"]
