"""Rate-limit headers of every provider and proxy, read in one place into a ``RateLimitInfo``.

Families read (providers.md §5, §8.2, §11), whichever a reply carries:

- OpenAI, Azure, Groq, Together, LiteLLM's pass-through: ``x-ratelimit-{limit,remaining,reset}-
  {requests,tokens}``, resets as Go durations (``6m0s``) or seconds.
- Proxies that scope limits (LiteLLM: a key, a model, a team, a user):
  ``x-ratelimit-{api_key,key,model,team,user,end_user}-{limit,remaining}-{requests,tokens}``,
  per minute.
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens}-{limit,remaining,reset}``,
  resets as RFC 3339 times; ``tokens`` (the most restrictive token limit) before
  ``input-tokens``.
- Azure behind API Management: ``x-ms-ratelimit-remaining-{requests,tokens}``.
- vLLM routers, OpenRouter and other gateways: ``x-ratelimit-{limit,remaining,reset}``, requests
  over a window they do not name; the reset is an epoch (seconds or milliseconds) or a delay.
- IETF ``ratelimit-{limit,remaining,reset}`` with ``ratelimit-policy: 100;w=60`` (the window), and
  the newer structured ``ratelimit: "default";r=50;t=30`` / ``ratelimit-policy: "default";q=100;
  w=60``.

A limit is only learned when its window is known (a minute, or a policy's ``w``), and is turned
into a per-minute figure; a remaining count is read whatever the window. When several families
speak, the most restrictive figure wins. A family whose limit reads 0 (Azure has sent 0 and -1)
says nothing. Every number goes through ``batchllm.providers.wire``'s sane readers: no header
value can raise. This module does not decide what to do with the figures (``batchllm.limits``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping

from batchllm.providers.base import RateLimitInfo
from batchllm.providers.wire import float_or_none, int_or_none, parse_duration, wait_or_none

_SCOPES = ("api_key", "api-key", "key", "model", "team", "user", "end_user", "end-user")
_ANTHROPIC = "anthropic-ratelimit-"
_POLICY_WINDOW = re.compile(r"\bw=(\d+(?:\.\d+)?)")
_POLICY_QUOTA = re.compile(r"\bq=(\d+(?:\.\d+)?)")
_STRUCTURED_REMAINING = re.compile(r"\br=(\d+(?:\.\d+)?)")
_STRUCTURED_RESET = re.compile(r"\bt=(\d+(?:\.\d+)?)")
_UNIT = re.compile(r'\bqu="?([a-z-]+)')
#: epoch values above this are milliseconds (it is 2286 in seconds)
_EPOCH_MS = 10_000_000_000
#: values above this are epochs, not delays (1990 in seconds)
_EPOCH_S = 631_152_000


def read(headers: Mapping[str, str]) -> RateLimitInfo:
    """Every rate-limit family the reply carries, merged (the most restrictive figure wins)."""
    return merge(
        [
            _openai(headers),
            *(_scoped(headers, scope) for scope in _SCOPES),
            _anthropic(headers),
            _azure_management(headers),
            _gateway(headers),
            _ietf(headers),
        ]
    )


def merge(infos: Iterable[RateLimitInfo]) -> RateLimitInfo:
    """The lowest limit, the lowest remaining and the longest reset over ``infos``."""
    found = [info for info in infos if info != RateLimitInfo()]
    if not found:
        return RateLimitInfo()
    if len(found) == 1:
        return found[0]
    return RateLimitInfo(
        limit_requests=_least(info.limit_requests for info in found),
        remaining_requests=_least(info.remaining_requests for info in found),
        reset_requests_s=_most(info.reset_requests_s for info in found),
        limit_tokens=_least(info.limit_tokens for info in found),
        remaining_tokens=_least(info.remaining_tokens for info in found),
        reset_tokens_s=_most(info.reset_tokens_s for info in found),
    )


def _family(
    limit_requests: int | None,
    remaining_requests: int | None,
    reset_requests_s: float | None,
    limit_tokens: int | None,
    remaining_tokens: int | None,
    reset_tokens_s: float | None,
) -> RateLimitInfo:
    """One family's figures; a limit of 0 makes that dimension's figures meaningless."""
    if limit_requests == 0:
        limit_requests = remaining_requests = None
    if limit_tokens == 0:
        limit_tokens = remaining_tokens = None
    return RateLimitInfo(
        limit_requests, remaining_requests, reset_requests_s,
        limit_tokens, remaining_tokens, reset_tokens_s,
    )  # fmt: skip


def _openai(h: Mapping[str, str]) -> RateLimitInfo:
    def limit_of(kind: str) -> int | None:
        names = [f"x-ratelimit-limit-{kind}"]
        if kind == "tokens":
            names.append("x-ratelimit-limit-project-tokens")
        return _least(int_or_none(h.get(name)) for name in names)

    def remaining_of(kind: str) -> int | None:
        names = [f"x-ratelimit-remaining-{kind}"]
        if kind == "tokens":
            names.append("x-ratelimit-remaining-project-tokens")
        return _least(int_or_none(h.get(name)) for name in names)

    return _family(
        limit_of("requests"),
        remaining_of("requests"),
        parse_duration(h.get("x-ratelimit-reset-requests")),
        limit_of("tokens"),
        remaining_of("tokens"),
        parse_duration(h.get("x-ratelimit-reset-tokens") or h.get("x-rate-limit-reset-tokens")),
    )


def _scoped(h: Mapping[str, str], scope: str) -> RateLimitInfo:
    prefix = f"x-ratelimit-{scope}-"
    return _family(
        int_or_none(h.get(f"{prefix}limit-requests")),
        int_or_none(h.get(f"{prefix}remaining-requests")),
        parse_duration(h.get(f"{prefix}reset-requests")),
        int_or_none(h.get(f"{prefix}limit-tokens")),
        int_or_none(h.get(f"{prefix}remaining-tokens")),
        parse_duration(h.get(f"{prefix}reset-tokens")),
    )


def _anthropic(h: Mapping[str, str]) -> RateLimitInfo:
    tokens = "tokens" if f"{_ANTHROPIC}tokens-limit" in h else "input-tokens"
    return _family(
        int_or_none(h.get(f"{_ANTHROPIC}requests-limit")),
        int_or_none(h.get(f"{_ANTHROPIC}requests-remaining")),
        seconds_until(h.get(f"{_ANTHROPIC}requests-reset")),
        int_or_none(h.get(f"{_ANTHROPIC}{tokens}-limit")),
        int_or_none(h.get(f"{_ANTHROPIC}{tokens}-remaining")),
        seconds_until(h.get(f"{_ANTHROPIC}{tokens}-reset")),
    )


def _azure_management(h: Mapping[str, str]) -> RateLimitInfo:
    return _family(
        None,
        int_or_none(h.get("x-ms-ratelimit-remaining-requests")),
        None,
        None,
        int_or_none(h.get("x-ms-ratelimit-remaining-tokens")),
        None,
    )


def _gateway(h: Mapping[str, str]) -> RateLimitInfo:
    """``x-ratelimit-limit/remaining/reset``: requests, over a window the gateway does not name,
    so only what remains (and when it resets) is read."""
    return _family(
        None,
        int_or_none(h.get("x-ratelimit-remaining")),
        _reset(h.get("x-ratelimit-reset")),
        None,
        None,
        None,
    )


def _ietf(h: Mapping[str, str]) -> RateLimitInfo:
    policy = h.get("ratelimit-policy") or ""
    unit = _UNIT.search(policy[:512])
    if unit is not None and unit.group(1) != "requests":
        return RateLimitInfo()  # a quota of bytes or concurrent requests, not of requests
    window = _number(_POLICY_WINDOW, policy)
    limit = int_or_none(h.get("ratelimit-limit")) or _int(_number(_POLICY_QUOTA, policy))
    structured = h.get("ratelimit") or ""
    remaining = int_or_none(h.get("ratelimit-remaining"))
    if remaining is None:
        remaining = _int(_number(_STRUCTURED_REMAINING, structured))
    reset = _reset(h.get("ratelimit-reset"))
    if reset is None:
        reset = wait_or_none(_number(_STRUCTURED_RESET, structured))
    per_minute = _per_minute(limit, window)
    return _family(per_minute, remaining, reset, None, None, None)


def _per_minute(limit: int | None, window_s: float | None) -> int | None:
    if limit is None or window_s is None or window_s <= 0:
        return None
    return int_or_none(str(limit * 60.0 / window_s))


def _number(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text[:512])
    return float_or_none(match.group(1)) if match else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _reset(value: str | None) -> float | None:
    """A reset as seconds from now: an epoch in milliseconds or seconds, or a delay."""
    number = float_or_none(value)
    if number is None:
        return parse_duration(value)
    if number > _EPOCH_MS:
        return wait_or_none(max(number / 1000 - time.time(), 0.0))
    if number > _EPOCH_S:
        return wait_or_none(max(number - time.time(), 0.0))
    return wait_or_none(number)


def seconds_until(value: str | None) -> float | None:
    """Seconds from now to an RFC 3339 time (0 when it has passed); None when unreadable."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip()[:64])
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return wait_or_none(max(moment.timestamp() - time.time(), 0.0))
    except (ValueError, OverflowError, OSError):
        return None


def _least(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _most(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
