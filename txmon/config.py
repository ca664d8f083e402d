"""The names other modules import: the settings model lives in txmon/settings.py."""

from txmon.settings import KafkaSettings, shared_data_dir, state_dir

DEFAULT_BOOTSTRAP = KafkaSettings.bootstrap

__all__ = ["DEFAULT_BOOTSTRAP", "KafkaSettings", "shared_data_dir", "state_dir"]
