"""PFD: pose-guided feature disentangling for occluded person re-identification."""

__version__ = "0.1.0"
