"""Manifest loading: YAML with line numbers, the JSON Schema, PEP 723, configuration precedence."""

from .loader import load_manifest
from .spec import EnvironmentSpec, JobSpec, RunSpec

__all__ = ["EnvironmentSpec", "JobSpec", "RunSpec", "load_manifest"]
