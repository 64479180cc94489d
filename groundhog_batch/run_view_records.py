"""What run_view answers ``status`` and ``logs`` with: failed calls grouped by error, one call's output.

Their own module: the progress display a submit starts with needs neither, so a submit's start never makes
these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FailureGroup:
    """Failed calls of one job with the same type of error (``ValueError``, ``TimeoutError``, ``TaskFailed``)."""

    job: str
    error_type: str
    calls: list[int] = field(default_factory=list)
    messages: dict[str, int] = field(
        default_factory=dict
    )  # first line of the error -> how many calls

    @property
    def count(self) -> int:
        return len(self.calls)

    @property
    def example(self) -> str:
        """The most frequent first line (the earliest in plan order on ties)."""
        return max(self.messages, key=self.messages.__getitem__)

    @property
    def error(self) -> str:
        """The shared first line, or ``TYPE (N different messages), e.g. <example>``."""
        if len(self.messages) == 1:
            return self.example
        return f"{self.error_type} ({len(self.messages)} different messages), e.g. {self.example}"


@dataclass(frozen=True)
class CallLog:
    """What one call printed and raised, with enough to name it."""

    job: str
    call: int
    state: str
    attempts: int
    params: dict
    error: str | None
    stdout: str
    stderr: str
    traceback: str

    def stream(self, name: str) -> str:
        return getattr(self, name) or ""


__all__ = ["CallLog", "FailureGroup"]
