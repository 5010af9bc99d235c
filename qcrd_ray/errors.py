"""Errors that more than one core module raises, kept apart so that those modules need not import each other.

``DataError`` is raised by every data reader (``qcrd_ray.data`` and ``qcrd_ray.hf_data``, which ``data`` calls);
``qcrd_ray.data`` re-exports it, so ``from qcrd_ray.data import DataError`` keeps working.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, malformed, or inconsistent with its companions."""
