"""What ``retry`` runs again: its own module, so that a submit's start never makes the dataclass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrySelection:
    """Which failed calls ``retry`` runs again (all by default), and settings changed for them (``--set``)."""

    job: str | None = None
    error_type: str | None = None  # ValueError, TimeoutError, TaskFailed, ...
    settings: tuple[str, ...] = ()
    accept_changed_script: bool = (
        False  # run them with the script as it is now (a new version of the run's script)
    )


__all__ = ["RetrySelection"]
