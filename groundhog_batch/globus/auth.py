"""Globus authentication, behind one seam: the SDK is imported only here, and only when used.

Tokens are the Globus Compute SDK's own (shared with ``globus-compute-endpoint``
and Groundhog). ``GLOBUS_COMPUTE_CLIENT_ID`` and ``GLOBUS_COMPUTE_CLIENT_SECRET``
select a client identity instead of a person. Without tokens and without a
terminal to log in at, hog-batch says so and stops: it never waits at a prompt.
"""

from __future__ import annotations

import sys

from ..errors import HogError

NO_TOKENS_HINT = ("run `hog-batch login` in a terminal, or set GLOBUS_COMPUTE_CLIENT_ID and "
                  "GLOBUS_COMPUTE_CLIENT_SECRET for a client identity")


def globus_app():
    """The SDK's GlobusApp, with the Compute scopes registered."""
    try:
        from globus_compute_sdk.sdk._environments import get_web_service_url
        from globus_compute_sdk.sdk.auth.globus_app import get_globus_app
        from globus_compute_sdk.sdk.client import _ComputeWebClient
    except ImportError as exc:  # pragma: no cover - the SDK is a declared dependency
        raise HogError(message=f"globus-compute-sdk is not importable: {exc}", hint="pip install globus-compute-sdk") from None
    try:
        app = get_globus_app()
    except ValueError as exc:
        raise HogError(message=str(exc), hint="set both variables, or neither") from None
    _ComputeWebClient(base_url=get_web_service_url(None), app=app)  # registers the Compute scopes; no request
    return app


def _is_client_identity(app) -> bool:
    from globus_sdk import ClientApp

    return isinstance(app, ClientApp)


def ensure_logged_in(app=None):
    """The app, logged in; a clear error (exit 2) when that needs a person and none is at a terminal."""
    app = app or globus_app()
    if _is_client_identity(app) or not app.login_required():
        return app
    if not sys.stdin.isatty():
        raise HogError(message="not logged in to Globus, and there is no terminal to log in at", hint=NO_TOKENS_HINT)
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
    app.logout()
    return "logged out: the stored Globus tokens were revoked and removed"


def whoami() -> str:
    app = globus_app()
    if not _is_client_identity(app) and app.login_required():
        raise HogError(message="not logged in to Globus", hint=NO_TOKENS_HINT)
    from globus_compute_sdk.sdk.auth.auth_client import ComputeAuthClient

    try:
        info = ComputeAuthClient(app=app).userinfo()
    except Exception as exc:
        raise HogError(message=f"Globus Auth did not answer who you are: {exc.__class__.__name__}",
                       hint="log in again with `hog-batch logout` then `hog-batch login`") from None
    return f"{info.get('preferred_username') or info.get('name') or info['sub']} ({info['sub']})"
