"""Globus authentication, behind one seam: the SDK is imported only here, and only when used.

Tokens are the Globus Compute SDK's own (shared with ``globus-compute-endpoint``
and Groundhog), and hog-batch asks for the same scopes the SDK's ``Client``
and the endpoint CLI ask for (Compute, plus Auth's ``openid`` and
``manage_projects``), so one login serves all three and none of them starts
another. ``GLOBUS_COMPUTE_CLIENT_ID`` and ``GLOBUS_COMPUTE_CLIENT_SECRET``
select a client identity instead of a person. Without tokens and without a
terminal to log in at, hog-batch says so and stops: it never waits at a prompt.
``whoami`` never logs in at all.
"""

from __future__ import annotations

import sys

from ..errors import HogError

NO_TOKENS_HINT = (
    "run `hog-batch login` in a terminal, or set GLOBUS_COMPUTE_CLIENT_ID and "
    "GLOBUS_COMPUTE_CLIENT_SECRET for a client identity"
)


def globus_app():
    """The SDK's GlobusApp, with the scopes the SDK and the endpoint CLI register (no request is made)."""
    try:
        from globus_compute_sdk.sdk.auth.auth_client import ComputeAuthClient
        from globus_compute_sdk.sdk.auth.globus_app import get_globus_app
        from globus_sdk import ComputeClientV3
    except ImportError as exc:  # pragma: no cover - the SDK is a declared dependency
        raise HogError(
            message=f"globus-compute-sdk is not importable: {exc}",
            hint="pip install globus-compute-sdk",
        ) from None
    try:
        app = get_globus_app()
    except ValueError as exc:
        raise HogError(message=str(exc), hint="set both variables, or neither") from None
    app.add_scope_requirements(
        {
            ComputeClientV3.scopes.resource_server: ComputeClientV3.default_scope_requirements,
            ComputeAuthClient.scopes.resource_server: ComputeAuthClient.default_scope_requirements,
        }
    )
    return app


def _has_tokens(app) -> bool:
    try:
        return bool(app.token_storage.get_token_data_by_resource_server())
    except Exception:  # noqa: BLE001 - an unreadable store holds nothing usable
        return False


def _is_client_identity(app) -> bool:
    from globus_sdk import ClientApp

    return isinstance(app, ClientApp)


def ensure_logged_in(app=None):
    """The app, logged in; a clear error (exit 2) when that needs a person and none is at a terminal."""
    app = app or globus_app()
    if _is_client_identity(app) or not app.login_required():
        return app
    if not sys.stdin.isatty():
        raise HogError(
            message="not logged in to Globus, and there is no terminal to log in at",
            hint=NO_TOKENS_HINT,
        )
    app.login()
    return app


def login() -> str:
    app = globus_app()
    if _is_client_identity(app):
        return "using the client identity from GLOBUS_COMPUTE_CLIENT_ID: there is nothing to log in"
    if not app.login_required():
        return "already logged in (`hog-batch whoami` shows who; `hog-batch logout` to switch)"
    ensure_logged_in(app)
    return "logged in"


def logout() -> str:
    app = globus_app()
    if _is_client_identity(app):
        return "using a client identity from the environment: unset GLOBUS_COMPUTE_CLIENT_ID/SECRET to stop"
    if not _has_tokens(app):
        return "not logged in: there were no stored Globus tokens to remove"
    app.logout()
    return "logged out: the stored Globus tokens were revoked and removed"


def whoami() -> str:
    app = globus_app()
    if not _is_client_identity(app) and app.login_required():
        raise HogError(message="not logged in to Globus", hint=NO_TOKENS_HINT)
    from globus_compute_sdk.sdk.auth.auth_client import ComputeAuthClient

    try:
        with app._disabled_token_validation_error_handler():  # whoami never starts a login
            info = ComputeAuthClient(app=app).userinfo()
    except Exception as exc:
        raise HogError(
            message=f"Globus Auth did not answer who you are: {exc.__class__.__name__}",
            hint="log in again with `hog-batch logout` then `hog-batch login`",
        ) from None
    return f"{info.get('preferred_username') or info.get('name') or info['sub']} ({info['sub']})"
