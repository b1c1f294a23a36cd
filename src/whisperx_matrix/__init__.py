"""whisperx-matrix: a tested build matrix for WhisperX on NVIDIA GPUs."""

__version__ = "0.1.0"
