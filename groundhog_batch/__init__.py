"""hog-batch: run a Python function over a sweep of arguments, locally or on HPC through Globus Compute.

The Python API mirrors the CLI::

    import groundhog_batch as hb
    spec = hb.load_manifest("sweep.yaml")
    plan = hb.make_plan(spec)
    run = hb.submit(spec, local=True)     # blocks until done; returns a Run
    table = run.results()                 # a pandas DataFrame, one row per call
    run = hb.submit(hb.sweep("fit.py", "fit", product={"omega0": [1, 2]}), wait=False)   # returns at once

Importing this package does no work: everything is loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load_manifest": ("groundhog_batch.manifest", "load_manifest"),
    "RunSpec": ("groundhog_batch.manifest", "RunSpec"),
    "make_plan": ("groundhog_batch.plan", "make_plan"),
    "Plan": ("groundhog_batch.plan", "Plan"),
    "submit": ("groundhog_batch.handle", "submit"),
    "open_run": ("groundhog_batch.handle", "open_run"),
    "resume": ("groundhog_batch.api", "resume"),
    "retry": ("groundhog_batch.api", "retry"),
    "cancel": ("groundhog_batch.api", "cancel"),
    "follow": ("groundhog_batch.api", "follow"),
    "RetrySelection": ("groundhog_batch.retry_selection", "RetrySelection"),
    "write_starter": ("groundhog_batch.manifest.starter", "write_starter"),
    "list_runs": ("groundhog_batch.api", "list_runs"),
    "Run": ("groundhog_batch.handle", "Run"),
    "CallResult": ("groundhog_batch.handle", "CallResult"),
    "CallFailed": ("groundhog_batch.handle", "CallFailed"),
    "Manifest": ("groundhog_batch.python_manifest", "Manifest"),
    "sweep": ("groundhog_batch.python_manifest", "sweep"),
    "estimate": ("groundhog_batch.estimate", "estimate"),
    "HogError": ("groundhog_batch.errors", "HogError"),
    "ManifestError": ("groundhog_batch.errors", "ManifestError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module_name, attribute = _API[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'groundhog_batch' has no attribute {name!r}")


def _keep_sweep_function() -> None:
    """``hb.sweep`` is the function, although ``groundhog_batch.sweep`` is also a module (spec -> calls):
    importing that module must not replace the package's attribute. ``from groundhog_batch.sweep import X``
    works as ever; ``from groundhog_batch import sweep`` gives the function."""
    import sys
    import types

    class _Package(types.ModuleType):
        @property
        def sweep(self):
            return __getattr__("sweep")

        @sweep.setter
        def sweep(self, value) -> None:
            pass

    sys.modules[__name__].__class__ = _Package


_keep_sweep_function()
