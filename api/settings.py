"""The service's settings: `nas.settings.Settings`, the one reader of the environment (see its table)."""

from nas.settings import ARTIFACT_DIR_ENV, Settings

__all__ = ["ARTIFACT_DIR_ENV", "Settings"]
