"""One error tree for the pack, by meaning. Every message is one line that says what happened and what to do."""

from __future__ import annotations

KEY_HELP = "set RUNFLOW_API_KEY or Settings \u2192 Runflow \u2192 API key"

#: The module name ComfyUI shows as an error's type ("Exception Type: runflow.ConfigError"). The real module is named
#: after the pack's absolute path inside ComfyUI, which would put a filesystem path in front of the message.
ERROR_MODULE = "runflow"


class RunflowError(Exception):
    """Base of every error the pack raises on purpose."""

    __module__ = ERROR_MODULE

    #: whether repeating the same request later may succeed
    retryable = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = ERROR_MODULE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InputError(RunflowError, ValueError):
    """Local validation failed; nothing was sent and nothing was billed."""


class ConfigError(RunflowError):
    """The pack is not configured (no key, bad base URL)."""


class SpendLimitError(RunflowError):
    """A local spend guard refused to create runs."""


class Interrupted(RunflowError):
    """The user cancelled while we were waiting."""


class ApiError(RunflowError):
    """Runflow answered with an HTTP error."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 errors: list | None = None, request_id: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors = errors or []
        self.request_id = request_id
        self.retry_after = retry_after


class AuthError(ApiError):
    """401: the key is missing, wrong or revoked."""


class CreditError(ApiError):
    """402: the account has no credit left."""


class PermissionError_(ApiError):
    """403: the key lacks a scope, or the account is not allowed."""


class NotFoundError(ApiError):
    """404/405: unknown model, run or path."""


class ConflictError(ApiError):
    """409: idempotency key reused with a different body, or a race."""


class ValidationError(ApiError):
    """400/422: Runflow refused the input; ``errors`` holds per-field details."""


class RateLimitError(ApiError):
    """429: too many requests."""

    retryable = True


class ServerError(ApiError):
    """5xx: Runflow or a gateway in front of it failed."""

    retryable = True


class TransportError(RunflowError):
    """No usable HTTP answer: connection refused or dropped, DNS, TLS, or a timeout."""

    retryable = True


class ConnectError(TransportError):
    """The request never reached the server (safe to retry even for a create)."""


class TimeoutError_(TransportError, TimeoutError):
    """The server did not answer in time."""


class RunTimeout(RunflowError, TimeoutError):
    """The run did not reach a terminal status within the overall timeout."""

    def __init__(self, message: str, *, run_id: str | None = None, status: str | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class RunFailed(RunflowError):
    """The run reached a failed/errored/canceled status."""

    def __init__(self, message: str, *, run_id: str | None = None, status: str | None = None,
                 failure_code: str | None = None, failure_message: str | None = None, cost: float | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.cost = cost  # what the run record says it cost (None: Runflow did not say)
        self.failure_code = failure_code
        self.failure_message = failure_message


class ResultError(RunflowError):
    """The run succeeded but its result could not be read (no URL, not an image, too large)."""


class PartialFailure(RunflowError):
    """Some items of a batch or turnaround failed; the others succeeded and were kept."""

    def __init__(self, message: str, *, failures: dict | None = None):
        super().__init__(message)
        self.failures = failures or {}


def mask_key(key: str | None) -> str:
    """Show at most the last 4 characters of a secret."""
    if not key:
        return "(none)"
    return "\u2026" + key[-4:] if len(key) > 8 else "\u2026"


class ExpiredURL(RunflowError):
    """A presigned URL answered 403/404/410 (expired or revoked): get a fresh one and try again."""


class RunMaybeCreated(RunflowError):
    """Stopped safely: a create got no usable answer and this API gives no safe way to tell whether the run exists,
    so the pack did not create again. The journal keeps the attempt; a re-queue looks the run up first."""

    def __init__(self, message: str, *, client_ref: str, idempotency_key: str | None = None):
        super().__init__(message)
        self.client_ref = client_ref
        self.idempotency_key = idempotency_key


def maybe_created_message(client_ref: str, why: str) -> str:
    return (f"Stopped safely: Runflow did not say whether run client_ref={client_ref} was created ({why}). A run may "
            f"have been created and may bill: look for client_ref {client_ref} at app.runflow.io \u2192 Runs; "
            "re-queue to try again (the pack looks it up first and creates a new run only if it cannot find it).")
