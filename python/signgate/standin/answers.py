"""What the stand-in answers a request with, whichever API it came in.

The request arrives as the providers' neutral :class:`~signgate.providers.Request`; the
answer is a :class:`~signgate.providers.Reply`: text, or one tool call.

**The tool-call rule.** With no tools, or a tool choice of "none", the answer is text. Else
the candidates are the function tools the choice allows (all of them, or the names it lists),
in the order given, and:

* a choice that forces one function (``tool_choice`` naming it; Anthropic's ``tool``;
  Gemini's ``ANY`` with one allowed name) calls it;
* otherwise the stand-in calls the first candidate whose ``parameters`` the last user
  message fills, that is whose arguments differ from those an empty message would get: the
  message reads as a search for that function;
* if none is filled, "required" (Anthropic's ``any``, Gemini's ``ANY``) still calls the first
  candidate, and "auto" answers in text.

The arguments, or the text of a ``json_schema`` answer, are :func:`~.model.extract` of the
schema and the last user message. A text answer longer than the request's output-token cap
is cut there (``Reply.cut``); a tool call is never cut, so its arguments are always whole JSON.
"""

from __future__ import annotations

import json
import math

from ..providers import Reply, Request, Tool, ToolCall, Usage
from .model import PLAIN_ANSWER, extract

#: Characters per token in the stand-in's estimates.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A deterministic token count: about four characters a token, at least one for any text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def fills(tool: Tool, text: str) -> bool:
    """Whether ``text`` says anything ``tool``'s parameters can hold."""
    return bool(extract(tool.parameters, text) != extract(tool.parameters, ""))


def choose_tool(request: Request) -> Tool | None:
    """The function the stand-in calls, by the rule in the module docstring; None for text."""
    choice = request.tool_choice
    if choice.mode == "none" or not request.tools:
        return None
    candidates = [t for t in request.tools if not choice.names or t.name in choice.names]
    if not candidates:
        return None
    if choice.forced is not None:
        return request.tool(choice.forced)
    text = request.last_user_text
    for tool in candidates:
        if fills(tool, text):
            return tool
    return candidates[0] if choice.mode == "required" else None


def respond(request: Request) -> Reply:
    """The stand-in's answer to ``request``."""
    text = request.last_user_text
    tool = choose_tool(request)
    if tool is not None:
        return Reply(tool_call=ToolCall(tool.name, json.dumps(extract(tool.parameters, text))))
    output = request.output
    if output.kind == "json_schema":
        content = json.dumps(extract(output.schema or {}, text))
    elif output.kind == "json":
        content = json.dumps({"standin": True, "note": PLAIN_ANSWER})
    else:
        content = PLAIN_ANSWER
    cap = request.max_output_tokens
    if cap is not None and estimate_tokens(content) > cap:
        return Reply(text=content[: cap * CHARS_PER_TOKEN], cut=True)
    return Reply(text=content)


def usage(request: Request, reply: Reply) -> Usage:
    """The stand-in's token counts: ``3 + Σ (4 + tokens)`` over the prompt's texts (system
    texts and turns) for input, the tokens of :attr:`Reply.content` for output."""
    prompt = 3 + sum(4 + estimate_tokens(text) for text in request.prompt_texts())
    return Usage(prompt, estimate_tokens(reply.content))
