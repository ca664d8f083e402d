"""The worker's settings under the name the processor's modules use; declared, with
their variables and defaults, in txmon/settings.py."""

from txmon.settings import ProcessorSettings as ProcessorConfig
from txmon.settings import default

#: Closed normal minutes in a row that resolve an incident (see processor/incidents.py).
RECOVERY_WINDOW: int = default(ProcessorConfig, "recovery_window")
RUNBOOK_URL: str = default(ProcessorConfig, "runbook_url")

__all__ = ["RECOVERY_WINDOW", "RUNBOOK_URL", "ProcessorConfig"]
