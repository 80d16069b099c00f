"""facegan: a DCGAN that learns to draw faces, on a laptop CPU or a GPU."""

from facegan.errors import CheckpointError, ConfigError, DataError, FaceGanError

__all__ = ["CheckpointError", "ConfigError", "DataError", "FaceGanError"]
__version__ = "0.1.0"
