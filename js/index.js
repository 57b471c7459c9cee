// Built from js/src/ by js/scripts/build.js (`npm run build`): edit those, not this file.

// js/src/errors.js
var SigngateError = class extends Error {
  name = "SigngateError";
  constructor(message, { cause, ...fields } = {}) {
    super(message, cause && { cause });
    Object.assign(this, fields);
  }
};
var SignEndpointError = class extends SigngateError {
  name = "SignEndpointError";
  code = "sign_failed";
};
var GatewayError = class extends SigngateError {
  name = "GatewayError";
};
var UpstreamError = class extends SigngateError {
  name = "UpstreamError";
  code = "upstream_error";
};
var StreamError = class extends SigngateError {
  name = "StreamError";
  // Not a field: a field would overwrite the sse_buffer_overflow code passed in.
  constructor(message, options) {
    super(message, { code: "stream_broken", ...options });
  }
};
var OutputParseError = class extends SigngateError {
  name = "OutputParseError";
  code = "invalid_output";
};
var AbortError = class extends SigngateError {
  name = "AbortError";
  code = "aborted";
};
var TimeoutError = class extends SigngateError {
  name = "TimeoutError";
  code = "timeout";
};

// js/src/json.js
var parseJSON = (text) => {
  try {
    return JSON.parse(text);
  } catch {
  }
};
var JSONParseError = class extends SyntaxError {
  name = "JSONParseError";
  constructor(message, type, position) {
    super(message);
    this.type = type;
    this.position = position;
  }
};
var WHITESPACE = " 	\n\r";
var ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "	" };
var LITERALS = { t: "true", f: "false", n: "null" };
var NUMBER_SYNTAX = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
var createJSONParser = () => {
  const stack = [];
  let root;
  let key;
  let state = "value";
  let token = "";
  let isKey;
  let shown = 0;
  let hex;
  let changed;
  let offset = 0;
  let position = 0;
  let failure;
  const fail = (text, at, type = "unexpected_character") => {
    throw new JSONParseError(text ? `Unexpected ${JSON.stringify(text)} at position ${at} in JSON` : "Unexpected end of JSON input", text ? type : "unexpected_end", at);
  };
  const put = (value, replace) => {
    const top = stack.at(-1);
    if (!top) {
      root = value;
    } else if (Array.isArray(top)) {
      top[replace ? top.length - 1 : top.length] = value;
    } else if (key === "__proto__") {
      Object.defineProperty(top, key, { value, writable: true, enumerable: true, configurable: true });
    } else {
      top[key] = value;
    }
    changed = true;
  };
  const afterValue = () => {
    state = stack.length ? "after_value" : "done";
  };
  const open = (value) => {
    put(value);
    stack.push(value);
  };
  const endNumber = () => {
    if (!NUMBER_SYNTAX.test(token)) {
      fail(token, offset, "invalid_number");
    }
    put(Number(token));
    afterValue();
  };
  const startString = (asKey) => {
    isKey = asKey;
    state = "string";
    token = "";
    shown = 0;
  };
  const step = (char, at) => {
    if (state === "number") {
      if ("0123456789+-.eE".includes(char)) {
        token += char;
        return;
      }
      endNumber();
    }
    if (state === "literal") {
      if (char !== token[shown]) {
        fail(char, at);
      }
      if (++shown === token.length) {
        put(JSON.parse(token));
        afterValue();
      }
      return;
    }
    if (WHITESPACE.includes(char)) {
      return;
    }
    if (state === "value_or_end") {
      if (char === "]") {
        stack.pop();
        return afterValue();
      }
      state = "value";
    }
    if (state === "value") {
      if (char === "{") {
        open({});
        state = "key_or_end";
      } else if (char === "[") {
        open([]);
        state = "value_or_end";
      } else if (char === '"') {
        put("");
        startString(false);
      } else if (char === "-" || char >= "0" && char <= "9") {
        token = char;
        offset = at;
        state = "number";
      } else if (LITERALS[char]) {
        token = LITERALS[char];
        shown = 1;
        state = "literal";
      } else {
        fail(char, at);
      }
    } else if (state === "after_value" && char === ",") {
      state = Array.isArray(stack.at(-1)) ? "value" : "key";
    } else if (state === "after_value" || state === "key_or_end") {
      if (char === (Array.isArray(stack.at(-1)) ? "]" : "}")) {
        stack.pop();
        afterValue();
      } else if (state === "key_or_end" && char === '"') {
        startString(true);
      } else {
        fail(char, at);
      }
    } else if (state === "key" && char === '"') {
      startString(true);
    } else if (state === "colon" && char === ":") {
      state = "value";
    } else {
      fail(char, at);
    }
  };
  const readString = (text, index) => {
    const run2 = index;
    for (; index < text.length; index++) {
      const char = text[index];
      if (char === '"' || char === "\\" || char < " ") {
        token += text.slice(run2, index);
        if (char === "\\") {
          state = "escape";
        } else if (char === '"') {
          if (isKey) {
            key = token;
            state = "colon";
          } else {
            if (token.length !== shown) {
              put(token, true);
            }
            afterValue();
          }
        } else {
          fail(char, position + index);
        }
        return index;
      }
    }
    token += text.slice(run2);
    return index;
  };
  const readEscape = (char, at) => {
    if (state === "escape") {
      if (char === "u") {
        hex = "";
        state = "unicode";
      } else if (ESCAPES[char]) {
        token += ESCAPES[char];
        state = "string";
      } else {
        fail(char, at);
      }
    } else {
      if (!/[\da-fA-F]/.test(char)) {
        fail(char, at);
      }
      hex += char;
      if (hex.length === 4) {
        token += String.fromCharCode(Number.parseInt(hex, 16));
        state = "string";
      }
    }
  };
  const parser = {
    get value() {
      return root;
    },
    get done() {
      return state === "done";
    },
    feed(text) {
      if (failure) {
        throw failure;
      }
      changed = false;
      try {
        for (let index = 0; index < text.length; index++) {
          if (state === "string") {
            index = readString(text, index);
          } else if (state === "escape" || state === "unicode") {
            readEscape(text[index], position + index);
          } else {
            step(text[index], position + index);
          }
        }
        if ((state === "string" || state === "escape" || state === "unicode") && !isKey && token.length !== shown) {
          put(token, true);
          shown = token.length;
        }
        position += text.length;
        return changed;
      } catch (error) {
        throw failure = error;
      }
    },
    end() {
      if (state === "number" && !stack.length) {
        parser.feed(" ");
      }
      if (failure) {
        throw failure;
      }
      if (state !== "done") {
        fail("", position);
      }
      return root;
    }
  };
  return parser;
};

// js/src/providers/anthropic.js
var anthropic = {
  name: "anthropic",
  is: (value) => /^(message|content_block|ping)/.test(value?.type),
  body(value, out) {
    if (!Array.isArray(value.content)) {
      return;
    }
    let called;
    for (const block of value.content) {
      if (block.type === "text") {
        out.text(block.text);
      } else if (block.type === "tool_use" && !called) {
        called = true;
        out.call(JSON.stringify(block.input ?? {}));
      }
    }
    out.end(value.stop_reason);
    return true;
  },
  stream(out) {
    let call;
    return (value) => {
      const { type, index, delta } = value ?? {};
      if (type === "content_block_start" && value.content_block?.type === "tool_use" && call === void 0) {
        call = index;
        out.call("");
      } else if (type === "content_block_delta" && delta?.type === "text_delta") {
        out.text(delta.text);
      } else if (type === "content_block_delta" && delta?.type === "input_json_delta" && index === call) {
        out.call(delta.partial_json);
      } else if (type === "message_delta" && delta?.stop_reason) {
        out.end(delta.stop_reason);
      } else if (type === "message_stop") {
        out.done();
      }
    };
  }
};

// js/src/providers/chat.js
var firstChoice = (value) => value?.choices?.find?.((choice) => !choice.index);
var take = (choice, out) => {
  const message = choice.delta ?? choice.message;
  if (message?.content) {
    out.text(message.content);
  }
  const call = message?.tool_calls?.find?.((call2) => !call2.index);
  if (call) {
    out.call(call.function?.arguments ?? "");
  }
  if (choice.finish_reason) {
    out.end(choice.finish_reason);
  }
};
var chat = {
  name: "chat",
  is: (value) => Array.isArray(value?.choices),
  body(value, out) {
    const choice = firstChoice(value);
    if (choice?.message) {
      take(choice, out);
      return true;
    }
  },
  stream: (out) => (value, data) => {
    if (data === "[DONE]") {
      out.done();
    } else if (firstChoice(value)) {
      take(firstChoice(value), out);
    }
  }
};

// js/src/providers/gemini.js
var take2 = (value, out, state) => {
  const candidate = value.candidates?.find?.((candidate2) => !candidate2.index);
  for (const part of candidate?.content?.parts ?? []) {
    if (part.thought) {
      continue;
    }
    if (part.text) {
      out.text(part.text);
    }
    if (part.functionCall && !state.called) {
      state.called = true;
      out.call(JSON.stringify(part.functionCall.args ?? {}));
    }
  }
  const reason = candidate?.finishReason ?? value.promptFeedback?.blockReason;
  if (reason) {
    out.end(reason);
  }
};
var is = (value) => Array.isArray(value?.candidates) || Boolean(value?.promptFeedback);
var gemini = {
  name: "gemini",
  is,
  body(value, out) {
    if (is(value)) {
      take2(value, out, {});
      return true;
    }
  },
  stream(out) {
    const state = {};
    return (value) => value && take2(value, out, state);
  }
};

// js/src/providers/responses.js
var finish = (response, out) => {
  if (response?.status === "failed") {
    out.fail(response.error ?? {});
  }
  out.end(response?.incomplete_details?.reason ?? response?.status ?? "completed");
};
var responses = {
  name: "responses",
  is: (value) => /^response\./.test(value?.type) || value?.object === "response",
  body(value, out) {
    if (!Array.isArray(value.output)) {
      return;
    }
    let called;
    for (const item of value.output) {
      if (item.type === "message") {
        for (const part of item.content ?? []) {
          if (part.type === "output_text") {
            out.text(part.text);
          }
        }
      } else if (item.type === "function_call" && !called) {
        called = true;
        out.call(item.arguments ?? "");
      }
    }
    finish(value, out);
    return true;
  },
  stream(out) {
    let call;
    return (value) => {
      const { type } = value ?? {};
      if (type === "response.output_text.delta") {
        out.text(value.delta);
      } else if (type === "response.output_item.added" && value.item?.type === "function_call" && call === void 0) {
        call = value.item.id;
        out.call(value.item.arguments ?? "");
      } else if (type === "response.function_call_arguments.delta" && (call ??= value.item_id) === value.item_id) {
        out.call(value.delta);
      } else if (/^response\.(completed|incomplete|failed)$/.test(type)) {
        finish(value.response, out);
        out.done();
      } else if (type === "error") {
        out.fail(value);
      }
    };
  }
};

// js/src/providers/index.js
var providers = [chat, responses, anthropic, gemini];

// js/src/sse.js
var SSEParseError = class extends Error {
  name = "SSEParseError";
  constructor(message, type) {
    super(message);
    this.type = type;
  }
};
var createSSEParser = ({ onEvent, onComment, maxBufferSize = 2 ** 20 }) => {
  let decoder, pending, data, event, id, skipLF;
  const reset = () => {
    decoder = new TextDecoder();
    pending = "";
    data = event = void 0;
    skipLF = false;
  };
  const checkSize = (size) => {
    if (size > maxBufferSize) {
      reset();
      throw new SSEParseError(`an event-stream line or event is longer than ${maxBufferSize} characters`, "buffer_overflow");
    }
  };
  const dispatchEvent = () => {
    if (data !== void 0) {
      const payload = { data, event, id };
      data = event = void 0;
      onEvent(payload);
    }
    event = void 0;
  };
  const processField = (field, value) => {
    if (field === "data") {
      data = data === void 0 ? value : data + "\n" + value;
      checkSize(data.length);
    } else if (field === "event") {
      event = value;
    } else if (field === "id" && !value.includes("\0")) {
      id = value;
    }
  };
  const parseLine = (line) => {
    if (!line) {
      return dispatchEvent();
    }
    if (line[0] === ":") {
      return onComment?.(line.slice(line[1] === " " ? 2 : 1));
    }
    const colon = line.indexOf(":");
    const value = colon < 0 ? "" : line.slice(colon + 1);
    processField(colon < 0 ? line : line.slice(0, colon), value[0] === " " ? value.slice(1) : value);
  };
  const processLines = (text) => {
    const lineEnd = /\r\n?|\n/g;
    let start = 0;
    for (let match; match = lineEnd.exec(text); ) {
      const line = pending + text.slice(start, match.index);
      pending = "";
      start = lineEnd.lastIndex;
      parseLine(line);
    }
    pending += text.slice(start);
    checkSize(pending.length);
  };
  reset();
  return {
    feed(chunk) {
      let text = typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      if (text) {
        if (skipLF && text[0] === "\n") {
          text = text.slice(1);
        }
        skipLF = text.at(-1) === "\r";
      }
      processLines(text);
    },
    reset
  };
};

// js/src/answer.js
var GATEWAY_EVENT = "signgate-error";
var readAnswer = async (response, { where, provider }, out) => {
  const { status } = response;
  let reason;
  let complete;
  const fail = (error) => {
    throw new UpstreamError(`${where}: the upstream sent an error in the stream`, { status, error });
  };
  const sink = {
    text: (delta) => typeof delta === "string" && out.text(delta),
    call: (delta) => typeof delta === "string" && out.call(delta),
    end(value) {
      reason = value;
    },
    done() {
      complete = true;
    },
    fail
  };
  if (!/text\/event-stream/.test(response.headers.get("content-type"))) {
    const body = await response.text();
    const value = parseJSON(body);
    provider ??= providers.find((candidate) => candidate.is(value));
    if (value == null || !provider?.body(value, sink)) {
      throw new UpstreamError(`${where}: the upstream answered ${status} with something that is not a model's answer`, { status, error: value?.error, body });
    }
    return reason;
  }
  let handle;
  const events = createSSEParser({
    onEvent({ data, event }) {
      if (complete) {
        return;
      }
      const value = parseJSON(data);
      if (event === GATEWAY_EVENT) {
        const error = typeof value?.error?.code === "string" ? value.error : { code: "stream_broken" };
        const message = typeof error.message === "string" ? ": " + error.message : "";
        throw new GatewayError(`${where}: the gateway ended the stream: ${error.code}${message}`, {
          code: error.code,
          status: Number.isInteger(value?.status) ? value.status : status,
          error
        });
      }
      if (value?.error) {
        fail(value.error);
      }
      provider ??= providers.find((candidate) => candidate.is(value));
      handle ??= provider?.stream(sink);
      handle?.(value, data);
    }
  });
  const reader = response.body.getReader();
  try {
    while (!complete) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (cause) {
        if (reason) {
          break;
        }
        throw new StreamError(`${where}: the stream broke before the answer was complete`, { cause });
      }
      if (chunk.done) {
        break;
      }
      try {
        events.feed(chunk.value);
      } catch (error) {
        throw error instanceof SSEParseError ? new StreamError(`${where}: ${error.message}`, { code: "sse_buffer_overflow", cause: error }) : error;
      }
    }
  } finally {
    reader.cancel().catch(() => {
    });
  }
  if (!complete && !reason) {
    throw new StreamError(`${where}: the stream ended before the answer was complete`);
  }
  return reason;
};

// js/src/fetch.js
var bare = (url) => String(url).replace(/[?#][^]*/, "");
var retryAfter = (headers) => {
  const value = headers.get("retry-after")?.trim() ?? "";
  const date = /[a-z]/i.test(value) && Date.parse(value);
  return /^\d+$/.test(value) ? Number(value) : date ? Math.max(0, Math.ceil((date - Date.now()) / 1e3)) : void 0;
};
var run = async (options, call, keepListening) => {
  const { signal, timeout } = options;
  const context = { where: "" };
  let controller;
  let timer;
  let timedOut;
  const abort = () => controller.abort(signal.reason);
  if (timeout != null && timeout < 2 ** 31) {
    controller = new AbortController();
    if (signal?.aborted) {
      abort();
    }
    signal?.addEventListener("abort", abort, { once: true });
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
  }
  const active = controller?.signal ?? signal;
  try {
    return await call(active, context);
  } catch (error) {
    if (active?.aborted) {
      throw timedOut ? new TimeoutError(`${context.where} timed out after ${timeout} ms`, { cause: error }) : new AbortError(`${context.where} was aborted`, { cause: signal.reason });
    }
    throw error;
  } finally {
    clearTimeout(timer);
    if (!keepListening) {
      signal?.removeEventListener("abort", abort);
    }
  }
};
var request = async (signEndpoint, payload, options, signal, context) => {
  const fetch_ = options.fetch ?? fetch;
  for (let retried = false; ; retried = true) {
    context.where = "POST " + bare(signEndpoint);
    const headers = new Headers(options.headers);
    if (!headers.has("content-type")) {
      headers.set("content-type", "application/json");
    }
    let response;
    let text;
    try {
      response = await fetch_(signEndpoint, {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        credentials: options.credentials ?? "same-origin",
        signal
      });
      text = await response.text();
    } catch (cause) {
      throw new SignEndpointError(`${context.where} failed: the sign endpoint could not be reached`, { status: response?.status ?? 0, cause });
    }
    let { status } = response;
    if (!response.ok) {
      let { error: error2 } = parseJSON(text) ?? {};
      error2 = typeof error2?.code === "string" ? error2 : void 0;
      const message = typeof error2?.message === "string" ? ": " + error2.message : "";
      throw new SignEndpointError(`${context.where} answered ${status}${message}`, { status, error: error2, retryAfter: retryAfter(response.headers), body: text });
    }
    const signed = parseJSON(text);
    if (typeof signed?.url !== "string") {
      throw new SignEndpointError(`${context.where} did not answer with a signed request {url, method, headers, body}`, { status, body: text });
    }
    context.where = `${signed.method} ${bare(signed.url)}`;
    try {
      response = await fetch_(signed.url, {
        method: signed.method,
        headers: signed.headers,
        body: signed.body,
        credentials: "omit",
        signal
      });
    } catch (cause) {
      throw new GatewayError(`${context.where} failed: the gateway could not be reached`, { code: "network_error", status: 0, cause });
    }
    if (response.ok) {
      return response;
    }
    ({ status } = response);
    const code = response.headers.get("x-signgate-error");
    text = await response.text().catch(() => "");
    const error = parseJSON(text)?.error;
    const fields = { status, retryAfter: retryAfter(response.headers) };
    if (code) {
      if (code === "expired" && status === 401 && !retried) {
        continue;
      }
      throw new GatewayError(`${context.where} was refused by the gateway: ${status} ${code}${error?.message ? ": " + error.message : ""}`, { code, error: error ?? { code }, ...fields });
    }
    const kind = [error?.code, error?.type, error?.status].find((value) => typeof value === "string");
    throw new UpstreamError(`${context.where}: the upstream answered ${status}${kind ? ` (${kind})` : ""}`, { error, body: text, ...fields });
  }
};
var signedFetch = (signEndpoint, payload, options = {}) => run(options, (signal, context) => request(signEndpoint, payload, options, signal, context), true);

// js/src/ask.js
var ask = (signEndpoint, payload, options, out, result) => run(options, async (signal, context) => {
  const { format } = options;
  const provider = providers.find((candidate) => candidate.name === format);
  if (format !== void 0 && !provider) {
    throw new TypeError(`format must be one of ${providers.map((candidate) => `'${candidate.name}'`).join(", ")}, or left out to recognise the API from its answer; got ${JSON.stringify(format)}`);
  }
  const response = await request(signEndpoint, payload, options, signal, context);
  return result(context.where, await readAnswer(response, { where: context.where, provider }, out));
});
var askJSON = (signEndpoint, payload, options = {}) => {
  const channel = () => ({ text: "", parser: createJSONParser() });
  const message = channel();
  let call;
  const take3 = (target, delta) => {
    if (!delta) {
      return;
    }
    target.text += delta;
    options.onText?.(delta);
    let changed;
    try {
      changed = target.parser?.feed(delta);
    } catch {
      target.parser = void 0;
    }
    if (changed) {
      options.onPartial?.(target.parser.value);
    }
  };
  return ask(signEndpoint, payload, options, {
    text: (delta) => take3(message, delta),
    call: (delta) => take3(call ??= channel(), delta)
  }, (where, reason) => {
    const { parser } = call ?? message;
    const text = call ? call.text || "{}" : message.text;
    if (parser) {
      try {
        return parser.end();
      } catch {
      }
    }
    try {
      return JSON.parse(text.trim().replace(/^```\w*|```$/g, ""));
    } catch (cause) {
      throw new OutputParseError(`${where}: the model's answer is not JSON${reason ? ` (stop reason: ${reason})` : ""}`, { text, cause });
    }
  });
};
var askText = (signEndpoint, payload, options = {}) => {
  let text = "";
  return ask(signEndpoint, payload, options, {
    text(delta) {
      text += delta;
      options.onText?.(delta);
    },
    call() {
    }
  }, () => text);
};
export {
  AbortError,
  GatewayError,
  JSONParseError,
  OutputParseError,
  SSEParseError,
  SignEndpointError,
  SigngateError,
  StreamError,
  TimeoutError,
  UpstreamError,
  askJSON,
  askText,
  createJSONParser,
  createSSEParser,
  signedFetch
};
