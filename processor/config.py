"""The worker's settings under the name the processor's modules use; declared, with
their variables and defaults, in txmon/settings.py."""

from txmon.settings import ProcessorSettings as ProcessorConfig

#: Closed normal minutes in a row that resolve an incident (see processor/incidents.py).
RECOVERY_WINDOW: int = ProcessorConfig.recovery_window
RUNBOOK_URL: str = ProcessorConfig.runbook_url

__all__ = ["RECOVERY_WINDOW", "RUNBOOK_URL", "ProcessorConfig"]
