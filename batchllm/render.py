"""Rows into requests: the prompt template, the request key and the token estimate.

Owns Jinja2 rendering (sandboxed, a missing column is an error, a null printed into the prompt is a
row error) and the ``request_key``, the hash of the exact request a row becomes: two rows with the
same key are the same call, and a changed prompt, model or parameter gives a new key. It does not
know any provider's wire format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jinja2
import orjson
from jinja2 import meta, nodes

from batchllm.errors import RowError as RowError  # defined with every error; kept importable here
from batchllm.errors import TemplateError
from batchllm.job import JobSpec
from batchllm.media import MediaRef
from batchllm.render_media import FUNCTIONS, MediaCollector
from batchllm.sandbox import BoundedEnvironment
from batchllm.validate import OutputSchema

#: the whole row, for columns whose names are not identifiers: ``{{ row["First Name"] }}``
ROW = "row"
# Chat formats add a few tokens of framing per message and per reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_REPLY = 3


@dataclass(frozen=True, slots=True)
class Request:
    """A provider-neutral request for one row."""

    row_key: str
    request_key: str
    model: str
    messages: tuple[tuple[str, str], ...]
    params: Mapping[str, Any]
    est_input_tokens: int
    max_tokens: int | None
    #: the reply's JSON Schema, sent natively (None: plain text, or instructions in the prompt)
    response_schema: Mapping[str, Any] | None = None
    schema_strict: bool = False
    #: hash of the row's data the request was rendered from (see ``input_hash``)
    input_hash: str = ""
    #: the images and documents the messages' markers stand for, read when the request is sent
    media: tuple[MediaRef, ...] = ()
    #: OpenAI's ``service_tier`` to ask for (None: not sent); not part of ``request_key``
    service_tier: str | None = None

    def follow_up(self, reply: str, problem: str) -> Request:
        """The same conversation, the invalid reply, and a request to correct it."""
        ask = (
            f"That reply was not valid: {problem}. Reply again with only the corrected JSON object."
        )
        added = (("assistant", reply), ("user", ask))
        extra = sum(estimate_tokens(text) + _TOKENS_PER_MESSAGE for _, text in added)
        return replace(
            self, messages=self.messages + added, est_input_tokens=self.est_input_tokens + extra
        )


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate: about four bytes of UTF-8 a token."""
    return (len(text.encode("utf-8")) + 3) // 4


class Renderer:
    """Compiled templates for one job; ``render(row)`` gives that row's ``Request``."""

    def __init__(
        self, job: JobSpec, columns: Sequence[str], schema: OutputSchema | None = None
    ) -> None:
        self.job = job
        native = schema is not None and job.model.native_schema
        self.schema = schema if native else None
        self.suffix = schema.instructions() if schema is not None and not native else ""
        env = BoundedEnvironment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_refuse_null,
        )
        self.user = _compile(env, job.prompt.template, "template", columns)
        self.system = (
            _compile(env, job.prompt.system, "system", columns)
            if job.prompt.system is not None
            else None
        )
        self.params = dict(job.model.params)
        self.media = MediaCollector(job)
        env.globals.update(self.media.functions())
        #: rows whose requests read files: their identity is the request key, which covers the
        #: files' content, so the shortcut of an unchanged row's data does not apply
        self.has_media = self.media.used or any(
            _calls_media(source) for source in (job.prompt.template, job.prompt.system or "")
        )
        self._env = env
        self._globals = dict(env.globals)
        sent_schema = self.schema.schema if self.schema is not None else None
        self._key_prefix = orjson.dumps(
            [job.model.provider, job.model.name, self.params, sent_schema],
            option=orjson.OPT_SORT_KEYS,
        )

    def render(self, row_key: str, row: Mapping[str, Any], input_hash: str = "") -> Request:
        """Render one row; raises ``RowError`` for a row-level problem."""
        self.media.start()
        try:
            messages: list[tuple[str, str]] = []
            with self._env.row_budget():
                if self.system is not None:
                    messages.append(("system", self._render(self.system, row)))
                user = self._render(self.user, row) + self.suffix
                messages.append(
                    ("user", user + self.media.columns(row) if self.media.used else user)
                )
        except RowError:
            raise
        except Exception as exc:  # a filter or value the template cannot handle: this row only
            raise RowError(f"template failed on this row: {exc}") from exc
        media, media_tokens = self.media.finish()
        return Request(
            row_key=row_key,
            request_key=self._request_key(messages, media),
            model=self.job.model.name,
            messages=tuple(messages),
            params=self.params,
            est_input_tokens=_estimate_prompt(messages) + media_tokens,
            max_tokens=self.job.model.max_tokens,
            response_schema=self.schema.schema if self.schema is not None else None,
            schema_strict=self.schema.strict if self.schema is not None else False,
            input_hash=input_hash,
            media=media,
            service_tier=self.job.model.service_tier,
        )

    def input_hash(self, row: Mapping[str, Any]) -> str:
        """The row's ``input_hash``; empty for media rows, which are recognised by request key."""
        return "" if self.has_media else input_hash(row)

    def _render(self, template: jinja2.Template, row: Mapping[str, Any]) -> str:
        # Template.render() copies the environment's globals through a ChainMap for every call,
        # which is most of its cost; one plain merge per row does the same job 2.5x faster.
        return self._env.render(template, {**self._globals, ROW: row, **row})

    def _request_key(self, messages: list[tuple[str, str]], media: tuple[MediaRef, ...]) -> str:
        digest = hashlib.blake2b(self._key_prefix, digest_size=16)
        digest.update(orjson.dumps(messages))
        for ref in media:  # a text-only request's key is what it always was
            digest.update(ref.key.encode())
        return digest.hexdigest()


def input_hash(row: Mapping[str, Any]) -> str:
    """A short hash of a row's whole data, to recognise an unchanged row without rendering it."""
    content = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(content, digest_size=8).hexdigest()


def _calls_media(source: str) -> bool:
    return any(f"{name}(" in source for name in FUNCTIONS)


def _estimate_prompt(messages: Sequence[tuple[str, str]]) -> int:
    body = sum(estimate_tokens(content) for _, content in messages)
    return body + _TOKENS_PER_MESSAGE * len(messages) + _TOKENS_PER_REPLY


def _compile(
    env: BoundedEnvironment, source: str, what: str, columns: Sequence[str]
) -> jinja2.Template:
    try:
        parsed = env.parse(source)
        named = meta.find_undeclared_variables(parsed) | _row_subscripts(parsed)
        missing = sorted(named - {ROW, *FUNCTIONS, *columns})
        # compiling checks what parsing does not: unknown filters and tests
        template = env.bounded(parsed) if not missing else None
    except jinja2.TemplateSyntaxError as exc:  # TemplateAssertionError (unknown filter) too
        raise TemplateError(f"[prompt] {what}: line {exc.lineno}: {exc.message}") from exc
    if template is None:
        raise TemplateError(
            f"[prompt] {what} uses column '{missing[0]}' that the input does not have "
            f"(columns: {', '.join(columns)})"
        )
    return template


def _row_subscripts(parsed: nodes.Template) -> set[str]:
    """The columns a template names as ``row["..."]``."""
    return {
        item.arg.value
        for item in parsed.find_all(nodes.Getitem)
        if isinstance(item.node, nodes.Name)
        and item.node.name == ROW
        and isinstance(item.arg, nodes.Const)
        and isinstance(item.arg.value, str)
    }


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise RowError("a column printed by the template is empty (null) in this row")
    return value
