"""The names other modules import: the settings model lives in txmon/settings.py."""

from txmon.settings import KafkaSettings, default, shared_data_dir, state_dir

DEFAULT_BOOTSTRAP: str = default(KafkaSettings, "bootstrap")

__all__ = ["DEFAULT_BOOTSTRAP", "KafkaSettings", "shared_data_dir", "state_dir"]
