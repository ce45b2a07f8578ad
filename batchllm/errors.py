"""Every error batchllm raises, in one tree.

Run-level errors stop a run and map to an exit code; row-level errors (``ProviderError``)
become data on an error row unless they are fatal. Whether a provider error is retried is a
property of its type, never of its message.

    BatchllmError                     run-level; ``exit_code`` is the CLI's exit status
    ├── UserError (2)                 the job, its input or the command line is wrong
    │   ├── JobFileError              bad TOML, unknown key, wrong type, missing section
    │   ├── InputError                input file missing, unreadable, unparseable
    │   ├── TemplateError             template syntax, or a column the input lacks
    │   ├── PriceError                no price known for the model
    │   ├── MissingKeyError           the API key variable is not set
    │   └── RunDirError               run directory locked, foreign or not writable
    ├── BudgetReached (3)             the cost cap stopped admission
    ├── FatalProviderError (4)        retrying cannot help: bad key, exhausted quota, wrong model
    ├── StorageError (5)              the run directory cannot be written (disk full, I/O error)
    └── Interrupted (130)             Ctrl-C / SIGTERM; the run can be resumed

    ProviderError                     one request failed; ``retryable`` says what to do
    ├── RateLimited                   429: wait (``retry_after_s``) and retry
    ├── FlexUnavailable               429 "resource unavailable" (no flex capacity): retry
    ├── ServerError                   5xx, 408, 409, 529: retry
    ├── Timeout                       no reply within ``timeout_s``: retry
    ├── ConnectionFailed              reset, refused, disconnected: retry
    ├── RequestRejected               400, 404, 413, 422 and other 4xx: the row fails
    ├── RequestTooLarge               larger than the whole per-minute token budget: the row fails
    ├── BadReply                      a 200 whose body is not a usable reply: retry
    ├── AuthFailed, QuotaExhausted    401/403, insufficient_quota: fatal, stop the run
    └── Redirected                    3xx: never followed (the key stays home): fatal

    Caught inside batchllm, never seen by a user as they are:
    RowError                          a row cannot become a request: an error row
    SchemaProblem                     the reply schema is unusable: a ``JobFileError``
    OverBudget                        the next request could pass the cap: ``BudgetReached``

The HTTP statuses a retry can fix are written once, in ``RETRY_STATUSES``, and read the common
way by ``error_for_status``; each adapter checks its provider's quirks (a spend cap, a bad key
said in a 400) before falling back on it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchllm.providers.base import Usage


class BatchllmError(Exception):
    """A run-level failure; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserError(BatchllmError):
    """Something the user can fix in the job file, the input or the command line."""

    exit_code = 2


class JobFileError(UserError):
    """The job file cannot be read or does not follow the job format."""


class InputError(UserError):
    """The input file is missing, unreadable or not in the declared format."""


class TemplateError(UserError):
    """The prompt template is invalid or names a column the input does not have."""


class PriceError(UserError):
    """No price is known for the model and the job file gives none."""


class MissingKeyError(UserError):
    """The environment variable that should hold the API key is not set."""


class RunDirError(UserError):
    """The run directory is locked by another run, belongs to another job, or is not writable."""


class BudgetReached(BatchllmError):
    """Admitting more requests would pass the cost cap."""

    exit_code = 3


class FatalProviderError(BatchllmError):
    """The provider refused in a way no retry can fix (bad key, exhausted quota)."""

    exit_code = 4


class StorageError(BatchllmError):
    """The run directory cannot be written (a full disk, an I/O error): the run stops; what
    reached the disk is kept and the next run resumes from it."""

    exit_code = 5


class Interrupted(BatchllmError):
    """The run was stopped by a signal after finishing what was in flight."""

    exit_code = 130


class ProviderError(Exception):
    """One request failed. Subclasses say whether a retry can help."""

    retryable = False
    fatal = False
    kind = "provider_error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class RateLimited(ProviderError):
    """A 429; ``limit`` is what it said was passed ("tokens", "requests") when it said."""

    retryable = True
    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after_s=retry_after_s)
        self.limit = limit if limit is not None else limit_named(message)


class FlexUnavailable(ProviderError):
    """A 429 that refuses a flex request for want of capacity ("resource unavailable"), not
    for the account's rate: retried with backoff without pausing the limiter."""

    retryable = True
    kind = "flex_unavailable"


class ServerError(ProviderError):
    retryable = True
    kind = "server_error"


class Timeout(ProviderError):
    retryable = True
    kind = "timeout"


class ConnectionFailed(ProviderError):
    retryable = True
    kind = "connection_error"


class BadReply(ProviderError):
    """A 200 with no usable reply; ``usage`` is what the provider reported (and charged) for it,
    when it did."""

    retryable = True
    kind = "bad_reply"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        usage: Usage | None = None,
        retryable: bool = True,
        kind: str = "bad_reply",
    ) -> None:
        super().__init__(message, status=status)
        self.usage = usage
        self.retryable = retryable
        self.kind = kind


class RequestRejected(ProviderError):
    kind = "rejected"


class RequestTooLarge(ProviderError):
    kind = "too_large"


class AuthFailed(ProviderError):
    fatal = True
    kind = "auth"


class QuotaExhausted(ProviderError):
    fatal = True
    kind = "quota"


class Redirected(ProviderError):
    """The server answered with a redirect. Following it would send the key to another address
    (perhaps over plain HTTP), so batchllm never does: the base URL must be fixed."""

    fatal = True
    kind = "redirect"


class RowError(Exception):
    """A row that cannot become a request (its template failed on it, or passed its budget):
    it becomes an error row and the run goes on."""


class SchemaProblem(Exception):
    """The schema itself is unusable (a job error)."""


class OverBudget(Exception):
    """The next request could pass the cap; nothing more is admitted."""


_TOKENS_PER_MINUTE = re.compile(r"tokens? per min|\b[IO]?TPM\b|tokens_per_min", re.IGNORECASE)
_REQUESTS_PER_MINUTE = re.compile(r"requests? per min|\bRPM\b|requests_per_min", re.IGNORECASE)


def limit_named(message: str) -> str | None:
    """Which limit a 429's message says was passed: "tokens", "requests", or None."""
    if _TOKENS_PER_MINUTE.search(message):
        return "tokens"
    if _REQUESTS_PER_MINUTE.search(message):
        return "requests"
    return None


#: statuses a later attempt can fix: timeout, conflict, rate limited, 5xx, overloaded (529)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retryable_status(status: int) -> bool:
    """Whether a reply with this HTTP status is worth sending again (any 5xx is)."""
    return status in RETRY_STATUSES or status >= 500


def error_for_status(
    status: int, message: str, *, retry_after_s: float | None = None
) -> ProviderError:
    """The common reading of an HTTP error: 401/403 ``AuthFailed``, 429 ``RateLimited``, the
    other retryable statuses ``ServerError`` (both keep ``retry_after_s``), else
    ``RequestRejected``."""
    if status in (401, 403):
        return AuthFailed(message, status=status)
    if status == 429:
        return RateLimited(message, status=status, retry_after_s=retry_after_s)
    if retryable_status(status):
        return ServerError(message, status=status, retry_after_s=retry_after_s)
    return RequestRejected(message, status=status)
