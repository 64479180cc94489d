"""The remote corner: running a run's tasks on Globus Compute endpoints.

- ``auth``: logging in, with the same scopes and token store as the SDK and the endpoint CLI.
- ``service``: the one seam to the Globus Compute web service (rate limit, retries, raw answers).
- ``config_check``: a job's endpoint config against the endpoint's ``user_config_schema``.
- ``transport``: the function that carries a rendered task script to the endpoint and runs it.
- ``backend``: the backend contract (submit, poll, cancel) over the service.

Nothing here imports the SDK at import time: only ``auth`` and ``service`` do, when used.
"""
