"""What every provider module shares: the neutral request, reply and usage, and the interface.

A provider knows one LLM API's request and answer shapes. Its readers are pure functions over
an already parsed JSON value (the caller chooses the JSON reader); its writers build the JSON
objects of answers and stream events. Nothing here does I/O.

::

    Provider.match(method, path, query)      -> Route | None    is this path the provider's?
    Provider.api_key(headers, query)         -> str             the key the client sent
    Provider.check_headers(headers)                             headers the API requires
    Provider.read_request(body, route)       -> Request         the neutral view of a request
    Provider.answer(request, reply, usage, stamp) -> dict       a non-streamed answer
    Provider.stream(request, reply, usage, stamp) -> StreamWriter   start/delta/end events
    Provider.error(ProviderError)            -> dict            the API's own error body
    Provider.answer_usage(answer)            -> Usage | None    usage in a non-streamed answer
    Provider.event_usage(data)               -> Usage | None    usage in one stream event
    Provider.upstream(path, query)           -> Route | None    a gateway's upstream path (any base URL)
    Provider.governed(body, route)           -> Governed        what a gateway's policy reads of a body

Every reader raises :class:`ProviderError` (``status``, ``message``, ``param``, ``code``) for a
request it cannot read; :meth:`Provider.error` turns that into the API's error body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from ._govern import Governed

Role = Literal["user", "assistant", "tool"]
Query = Mapping[str, Sequence[str]]
Headers = Mapping[str, str]


class ProviderError(Exception):
    """A request a provider refuses. ``param`` names the field (``messages[0].role``);
    ``code`` is a stable machine-readable word where the API has one."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of the conversation as plain text.

    ``tool`` turns carry a tool's result; an assistant turn that called a tool carries the
    call's arguments as its text. Parts that are not text (images, files) are left out.
    """

    role: Role
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema (``{}`` when none)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model must, may or must not call a function.

    ``names`` restricts which functions may be called (empty: any); ``required`` with one
    name forces that function. Every API's forms map here: OpenAI's ``"required"`` and
    ``{"type": "function", ...}``, Anthropic's ``any`` and ``tool``, Gemini's ``ANY`` with
    ``allowedFunctionNames``.
    """

    mode: Literal["auto", "none", "required"] = "auto"
    names: tuple[str, ...] = ()

    @property
    def forced(self) -> str | None:
        """The one function the model must call, if the choice names exactly one."""
        return self.names[0] if self.mode == "required" and len(self.names) == 1 else None


@dataclass(frozen=True, slots=True, eq=False)
class OutputFormat:
    """The answer's format: plain ``text``, any ``json`` object, or JSON matching ``schema``.

    ``schema`` is always JSON Schema: dialects (Gemini's OpenAPI-style ``responseSchema``)
    are converted by the provider.
    """

    kind: Literal["text", "json", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """The neutral view of one generation request, whichever API it came in.

    ``system`` holds every system text (system and developer messages, ``instructions``,
    ``system``, ``systemInstruction``) in order; ``turns`` the rest of the conversation.
    ``max_output_tokens`` is the smallest cap the request sets, or None. ``stream_usage`` is
    whether a stream ends with usage (OpenAI Chat only sends it when asked).
    """

    model: str
    system: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()
    output: OutputFormat = field(default_factory=OutputFormat)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    stream: bool = False
    max_output_tokens: int | None = None
    stream_usage: bool = True

    @property
    def last_user_text(self) -> str:
        """The text of the last user turn, or ``""``."""
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn.text
        return ""

    def prompt_texts(self) -> tuple[str, ...]:
        """Every text the prompt carries: system texts, then each turn's, in order."""
        return (*self.system, *(t.text for t in self.turns))

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)


@dataclass(frozen=True, slots=True)
class Route:
    """A path a provider answers. ``operation`` is ``generate`` or ``models`` (a model list);
    ``model`` and ``stream`` are set when the path says them (Gemini's do)."""

    operation: Literal["generate", "models"]
    methods: tuple[str, ...] = ("POST",)
    model: str | None = None
    stream: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of ``name``; ``arguments`` is the JSON text of its argument object."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model says: ``text``, or one ``tool_call``. ``cut`` when it stopped at the
    output-token cap rather than by itself."""

    text: str = ""
    tool_call: ToolCall | None = None
    cut: bool = False

    @property
    def content(self) -> str:
        """The characters a stream carries: the text, or the tool call's arguments."""
        return self.tool_call.arguments if self.tool_call is not None else self.text


class Usage(NamedTuple):
    """Tokens one answer used; None where the source did not say.

    ``input_tokens`` counts every prompt token, cached or not; ``output_tokens`` every
    generated one, reasoning included. Usage in a stream can come in parts (Anthropic's
    ``message_start`` and ``message_delta``, Gemini's every chunk): :meth:`then` folds a
    later report over an earlier one, each count the later one knows replacing the earlier.
    (A named tuple, not a frozen dataclass: the gateway reads one per streamed event, and
    building a frozen dataclass costs several times more.)
    """

    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def then(self, later: Usage | None) -> Usage:
        if later is None:
            return self
        return Usage(
            later.input_tokens if later.input_tokens is not None else self.input_tokens,
            later.output_tokens if later.output_tokens is not None else self.output_tokens,
        )


@dataclass(frozen=True, slots=True)
class Stamp:
    """What makes one answer unique: a random ``token`` the provider builds its ids from, and
    the ``created`` time in Unix seconds."""

    token: str
    created: int


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: an optional ``event:`` name and its data (JSON, or a literal
    such as OpenAI's ``[DONE]``)."""

    name: str | None
    data: Mapping[str, Any] | str


def encode_events(events: Sequence[Event]) -> bytes:
    """``events`` as ``text/event-stream`` bytes, one ``data:`` line each."""
    out = []
    for event in events:
        data = event.data if isinstance(event.data, str) else json.dumps(event.data)
        head = f"event: {event.name}\n" if event.name else ""
        out.append(f"{head}data: {data}\n\n")
    return "".join(out).encode()


class StreamWriter(Protocol):
    """The events of one streamed answer, in three steps the server paces.

    ``start`` is sent at once, each ``delta`` carries the next piece of :attr:`Reply.content`
    (it may return no event: Gemini sends a function call whole), ``end`` closes the stream.
    """

    def start(self) -> list[Event]: ...

    def delta(self, piece: str) -> list[Event]: ...

    def end(self) -> list[Event]: ...


class Provider(Protocol):
    """One LLM API's knowledge. See the module docstring for what each method does."""

    #: Short stable name: ``chat``, ``responses``, ``anthropic``, ``gemini``.
    name: str
    #: Header names (lower case) a client may carry its API key in; a gateway strips them all.
    key_headers: tuple[str, ...]

    def match(self, method: str, path: str, query: Query) -> Route | None:
        """The route if ``path`` is this API's (whatever the method; the caller checks
        :attr:`Route.methods`), None if not. Raises :class:`ProviderError` (404) for a path in
        the API's own namespace that names nothing it serves."""
        ...

    def auth_header(self, key: str) -> tuple[str, str]:
        """The header that carries ``key`` upstream, as (name, value)."""
        ...

    def api_key(self, headers: Headers, query: Query) -> str:
        """The key the client sent; :class:`ProviderError` (401) if there is none, or if it
        is sent in two places."""
        ...

    def check_headers(self, headers: Headers) -> None:
        """:class:`ProviderError` if a header the API requires is missing or malformed."""
        ...

    def read_request(self, body: object, route: Route) -> Request:
        """The neutral view of ``body`` (parsed JSON), or :class:`ProviderError` naming the field."""
        ...

    def answer(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> dict[str, Any]:
        """The non-streamed answer's JSON object."""
        ...

    def stream(self, request: Request, reply: Reply, usage: Usage, stamp: Stamp) -> StreamWriter:
        """The events of the streamed answer."""
        ...

    def models(self, ids: Sequence[str]) -> dict[str, Any]:
        """The answer to a ``models`` route: a list of the model ``ids``."""
        ...

    def error(self, error: ProviderError) -> dict[str, Any]:
        """``error`` as the API's error body (send it with ``error.status``)."""
        ...

    def answer_usage(self, answer: object) -> Usage | None:
        """The usage a non-streamed answer reports, or None if it reports none."""
        ...

    def event_usage(self, data: object) -> Usage | None:
        """The usage one stream event's data reports, or None; fold parts with :meth:`Usage.then`."""
        ...

    def upstream(self, path: str, query: Query) -> Route | None:
        """The route of a forwarded request's decoded upstream path (after any base URL), or None."""
        ...

    def governed(self, body: dict[str, Any], route: Route) -> Governed:
        """What a gateway's body policy and accounting read of ``body`` (see :mod:`._govern`)."""
        ...
