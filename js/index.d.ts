/**
The signed request a backend's sign endpoint answers with. The browser sends it exactly as given.

@example
```
// What a backend's sign endpoint sends back:
const signed: SignedRequest = {
	url: 'https://gateway.example/v1/chat/completions?X-Sw-Algorithm=SW1-HMAC-SHA256&…',
	method: 'POST',
	headers: {'content-type': 'application/json'},
	body: '{"model":"gpt-4o-mini","stream":true,"messages":[…]}',
};
```
*/
export type SignedRequest = {
	/** The gateway URL. Its query string holds the signature: never log it. */
	url: string;
	method: string;
	headers: Record<string, string>;
	/** The request body, already serialised, or null. */
	body: string | null;
};

/**
Options of `signedFetch` and `askJSON`.

@example
```
const options: SignedFetchOptions = {headers: {'x-csrf-token': token}, timeout: 30_000};
```
*/
export type SignedFetchOptions = {
	/**
	Credentials for the call to the sign endpoint (the app's own backend). The gateway call always uses `'omit'`.

	@default 'same-origin'
	*/
	readonly credentials?: RequestCredentials;

	/** Extra headers for the sign endpoint, e.g. a CSRF token. `content-type: application/json` is added unless given. */
	readonly headers?: HeadersInit;

	/** A fetch implementation to use instead of the global one. */
	readonly fetch?: typeof fetch;

	/** Aborts the call; it then rejects with `AbortError`. */
	readonly signal?: AbortSignal;

	/**
	Milliseconds before the call rejects with `TimeoutError`. For `askJSON` it covers the whole call. For `signedFetch` it covers signing and the gateway's response headers; `signal` still governs the body, through a listener left on it until it aborts.

	@default Infinity
	*/
	readonly timeout?: number;
};

/**
What the answer looks like while it streams in: some keys, shorter arrays, strings cut short.

@example
```
type Recipe = {title: string; steps: string[]};
const partial: PartialJSON<Recipe> = {title: 'Panc'};
```
*/
export type PartialJSON<T> = T extends Array<infer Item>
	? Array<PartialJSON<Item>>
	: T extends Record<string, unknown>
		? {[Key in keyof T]?: PartialJSON<T[Key]>}
		: T;

/**
The model APIs `askJSON` and `askText` read, by the name their `format` option takes:

- `chat`: OpenAI Chat Completions, and the servers that copy it (Azure OpenAI, Ollama, vLLM, llama.cpp, OpenRouter, Groq, …);
- `responses`: OpenAI Responses;
- `anthropic`: Anthropic Messages;
- `gemini`: Google Gemini's `generateContent`, and `streamGenerateContent` with `?alt=sse`.

@example
```
const format: AnswerFormat = 'anthropic';
await askJSON('/api/sign', payload, {format});
```
*/
export type AnswerFormat = 'chat' | 'responses' | 'anthropic' | 'gemini';

/**
Options of `askText`: those of `signedFetch`, the API the answer comes from, and a callback that follows the text as it streams in.

@example
```
const options: AskTextOptions = {format: 'gemini', onText: delta => output.append(delta)};
```
*/
export type AskTextOptions = SignedFetchOptions & {
	/**
	The API the answer comes from. Left out, it is recognised from the answer, which is almost always right; name it when a server's answers could pass for another API's.
	*/
	readonly format?: AnswerFormat;

	/** Called with each piece of the model's text as it arrives. */
	readonly onText?: (delta: string) => void;
};

/**
Options of `askJSON`: those of `signedFetch`, the API the answer comes from, and callbacks that follow the answer as it streams in.

@example
```
const options: AskJSONOptions<{title: string}> = {
	onText: delta => output.append(delta),
	onPartial: partial => (heading.textContent = partial.title ?? ''),
};
```
*/
export type AskJSONOptions<T = unknown> = SignedFetchOptions & {
	/**
	The API the answer comes from. Left out, it is recognised from the answer, which is almost always right; name it when a server's answers could pass for another API's.
	*/
	readonly format?: AnswerFormat;

	/** Called with each piece of the model's output as it arrives: its text, and a tool call's arguments. */
	readonly onText?: (delta: string) => void;

	/**
	Called with the answer parsed so far, each time it changed. Complete keys and values appear as they finish; a string value appears as soon as its opening quote arrives and grows as the text comes in; numbers, `true`, `false` and `null` appear once complete.

	The same object is updated in place between calls (this keeps the parsing linear): copy it, e.g. with `structuredClone`, to keep a snapshot or to hand a new object to a UI framework.

	It works alike whether the JSON comes as text or as a tool call's arguments, except with Gemini, which sends a call's arguments whole: one call, with the complete object.
	*/
	readonly onPartial?: (partial: PartialJSON<T>) => void;
};

/**
Base class of every error signgate throws. `code` is stable and meant for programs; `message` names the method and URL (without the query string, which holds the signature).

@example
```
import {askJSON, SigngateError} from 'signgate';

try {
	await askJSON('/api/sign', {question});
} catch (error) {
	if (error instanceof SigngateError) {
		console.warn(error.code);
	}
}
```
*/
export class SigngateError extends Error {
	readonly code: string;
}

/**
The app's sign endpoint failed, could not be reached (`status` 0) or did not answer with a signed request.

When the endpoint answers an error as JSON `{"error": {"code": "…", "message": "…"}}` (the gateway's own shape), `error` holds that object and `message` ends with its message; `retryAfter` holds its `Retry-After`, so the page can say what the app said and when to try again.

@example
```
import {askJSON, SignEndpointError} from 'signgate';

try {
	await askJSON('/api/sign', payload);
} catch (error) {
	if (error instanceof SignEndpointError && error.status === 401) {
		location.assign('/login');
	} else if (error instanceof SignEndpointError && error.status === 429) {
		showMessage(error.error?.message ?? 'Too many requests.', error.retryAfter);
	}
}
```
*/
export class SignEndpointError extends SigngateError {
	readonly code: 'sign_failed';
	/** The sign endpoint's HTTP status; 0 when it could not be reached. */
	readonly status: number;
	/** The endpoint's JSON error, when its body is `{"error": {"code", "message"}}` with a string `code`. */
	readonly error?: {code: string; message?: string; [key: string]: unknown};
	/** Seconds to wait before trying again, from the endpoint's `Retry-After` (delta-seconds or an HTTP date), when it sent one. */
	readonly retryAfter?: number;
	/** The sign endpoint's response body; absent when it could not be reached. */
	readonly body?: string;
}

/**
The codes the gateway answers with (docs/protocol.md says when), and `network_error` when it could not be reached. Any other string may come from a newer gateway.

@example
```
const retryable: GatewayErrorCode[] = ['at_capacity', 'store_unavailable', 'network_error'];
if (error instanceof GatewayError && error.code === 'revoked') {
	showMessage('This link was withdrawn; please sign in again.');
}
```
*/
export type GatewayErrorCode =
	| 'malformed'
	| 'unsupported_algorithm'
	| 'expiry_too_long'
	| 'unknown_key'
	| 'expired'
	| 'not_yet_valid'
	| 'bad_signature'
	| 'missing_header'
	| 'body_mismatch'
	| 'revoked'
	| 'invalid_json'
	| 'upgrade_not_supported'
	| 'policy_violation'
	| 'upstream_not_allowed'
	| 'origin_not_allowed'
	| 'not_found'
	| 'client_timeout'
	| 'replayed'
	| 'length_required'
	| 'body_too_large'
	| 'unsupported_encoding'
	| 'requests_per_minute_exceeded'
	| 'concurrent_streams_exceeded'
	| 'tokens_per_day_exceeded'
	| 'headers_too_large'
	| 'internal_error'
	| 'upstream_unreachable'
	| 'at_capacity'
	| 'store_unavailable'
	| 'upstream_timeout'
	| 'network_error'
	| (string & Record<never, never>);

/**
The gateway refused the request (it answered with an `x-signgate-error` header), or could not be reached (`code` `network_error`, `status` 0). An `expired` refusal has already been retried once with a fresh signature.

A URL the backend revoked is refused with `revoked` (status 401; `error.scope` says whether its `user`, `tenant`, `key` or `nonce` was revoked). A gateway started with `--revoke-live` also ends a stream in flight that way: the answer stops with a `GatewayError` `revoked` instead of its end.

Over one of the gateway's limits the status is 429 and the code names the limit: `requests_per_minute_exceeded`, `concurrent_streams_exceeded` or `tokens_per_day_exceeded`; `error.scope` says whose limit (`key`, `tenant` or `user`) and `retryAfter` when to try again.

@example
```
import {askJSON, GatewayError} from 'signgate';

try {
	await askJSON('/api/sign', payload);
} catch (error) {
	if (error instanceof GatewayError && error.code.endsWith('_exceeded')) {
		showMessage(`Too many requests; try again in ${error.retryAfter ?? 60} s.`);
	}
}
```
*/
export class GatewayError extends SigngateError {
	/** The gateway's code: `expired`, `bad_signature`, `replayed`, `revoked`, `upstream_not_allowed`, `policy_violation`, `requests_per_minute_exceeded`, `at_capacity`, … (docs/protocol.md lists them all), or `network_error`. */
	readonly code: GatewayErrorCode;
	readonly status: number;
	/** The gateway's error object, e.g. `{code: 'expired', message: '…', now: 1700000000}`, or `{code: 'requests_per_minute_exceeded', message: '…', scope: 'user', limit: 30}`. */
	readonly error?: {code: string; message?: string; [key: string]: unknown};
	/** Seconds to wait before trying again, from the gateway's `Retry-After` (sent with the `*_exceeded` codes, `at_capacity` and `store_unavailable`). */
	readonly retryAfter?: number;
}

/**
The model API (behind the gateway) answered with an error, sent one in its stream, or answered with something that is not a model's answer.

@example
```
import {askJSON, UpstreamError} from 'signgate';

try {
	await askJSON('/api/sign', payload);
} catch (error) {
	if (error instanceof UpstreamError && error.status === 429) {
		console.warn(error.error);
	}
}
```
*/
export class UpstreamError extends SigngateError {
	readonly code: 'upstream_error';
	readonly status: number;
	/** The upstream's error object as it sent it, e.g. OpenAI's `{message, type, code}`, Anthropic's `{type, message}`, Gemini's `{code, message, status}`. */
	readonly error?: unknown;
	/** The upstream's response body. */
	readonly body?: string;
	/** Seconds to wait before trying again, from the upstream's `Retry-After`, if it sent one. */
	readonly retryAfter?: number;
}

/**
The answer's stream broke or ended before it was complete (`stream_broken`), or one event-stream line or event was longer than the parser's buffer (`sse_buffer_overflow`, with the parser's `SSEParseError` as its `cause`).

@example
```
import {askJSON, StreamError} from 'signgate';

try {
	await askJSON('/api/sign', payload);
} catch (error) {
	if (error instanceof StreamError) {
		showMessage('The connection broke; please try again.');
	}
}
```
*/
export class StreamError extends SigngateError {
	readonly code: 'stream_broken' | 'sse_buffer_overflow';
}

/**
The model's answer is not JSON. A fenced answer (```` ```json … ``` ````) is accepted. The message ends with the API's stop reason when it sent one, e.g. `(stop reason: length)` for an answer cut at the token limit.

@example
```
import {askJSON, OutputParseError} from 'signgate';

try {
	await askJSON('/api/sign', payload);
} catch (error) {
	if (error instanceof OutputParseError) {
		console.log(error.text);
	}
}
```
*/
export class OutputParseError extends SigngateError {
	readonly code: 'invalid_output';
	/** The model's whole answer: its text, or the tool call's arguments when it called one. */
	readonly text: string;
}

/**
The call was aborted through its `signal`. `cause` is the signal's reason.

@example
```
import {askJSON, AbortError} from 'signgate';

const controller = new AbortController();
stopButton.onclick = () => controller.abort();
try {
	await askJSON('/api/sign', payload, {signal: controller.signal});
} catch (error) {
	if (!(error instanceof AbortError)) {
		throw error;
	}
}
```
*/
export class AbortError extends SigngateError {
	readonly code: 'aborted';
}

/**
The call took longer than its `timeout`.

@example
```
import {askJSON, TimeoutError} from 'signgate';

try {
	await askJSON('/api/sign', payload, {timeout: 30_000});
} catch (error) {
	if (error instanceof TimeoutError) {
		showMessage('The model is slow today.');
	}
}
```
*/
export class TimeoutError extends SigngateError {
	readonly code: 'timeout';
}

/**
POST `payload` as JSON to the app's sign endpoint, send the signed request it answers with to the gateway (without cookies), and resolve with the gateway's 2xx `Response`. An `expired` refusal is retried once with a fresh signature.

@param signEndpoint - The app's own endpoint that answers with a `SignedRequest`.
@param payload - What the backend needs to build the request; sent as JSON.
@returns The gateway's response; its body is not read.
@throws SignEndpointError, GatewayError, UpstreamError, AbortError, TimeoutError

@example
```
import {signedFetch} from 'signgate';

const response = await signedFetch('/api/sign', {prompt: 'Hello'}, {headers: {'x-csrf-token': token}});
for await (const chunk of response.body) {
	console.log(chunk);
}
```
*/
export function signedFetch(signEndpoint: string | URL, payload: unknown, options?: SignedFetchOptions): Promise<Response>;

/**
Ask the model through the gateway and resolve with the JSON it wrote, parsed: its text, or, when it called a tool, the first tool call's arguments (a call without any is `{}`). Reads every `AnswerFormat`, streamed (`text/event-stream`) or not, recognising the API from the answer unless `format` names it.

@param signEndpoint - The app's own endpoint that answers with a `SignedRequest` for the model API call.
@param payload - What the backend needs to build that call; sent as JSON.
@throws SignEndpointError, GatewayError, UpstreamError, StreamError, OutputParseError, AbortError, TimeoutError, and TypeError for an unknown `format`

@example
```
import {askJSON} from 'signgate';

const recipe = await askJSON<{title: string; steps: string[]}>('/api/recipe', {dish: 'pancakes'}, {
	onPartial(partial) {
		render(partial.title, partial.steps ?? []);
	},
});
console.log(recipe.steps.length);
```
*/
export function askJSON<T = unknown>(signEndpoint: string | URL, payload: unknown, options?: AskJSONOptions<T>): Promise<T>;

/**
Ask the model through the gateway and resolve with the text it wrote (tool calls are left out). Reads every `AnswerFormat`, streamed or not, as `askJSON` does.

@param signEndpoint - The app's own endpoint that answers with a `SignedRequest` for the model API call.
@param payload - What the backend needs to build that call; sent as JSON.
@throws SignEndpointError, GatewayError, UpstreamError, StreamError, AbortError, TimeoutError, and TypeError for an unknown `format`

@example
```
import {askText} from 'signgate';

output.textContent = '';
const summary = await askText('/api/summary', {article: id}, {
	onText: delta => output.append(delta),
});
```
*/
export function askText(signEndpoint: string | URL, payload: unknown, options?: AskTextOptions): Promise<string>;

/**
One server-sent event.

@example
```
// "event: update\nid: 7\ndata: a\ndata: b\n\n" is
const event: SSEEvent = {event: 'update', id: '7', data: 'a\nb'};
```
*/
export type SSEEvent = {
	/** The event's data lines, joined with `\n`. */
	data: string;
	/** The `event:` field, or undefined for a plain message. */
	event: string | undefined;
	/** The last `id:` seen in the stream so far. */
	id: string | undefined;
};

/**
Options of `createSSEParser`.

@example
```
const options: SSEParserOptions = {onEvent: event => console.log(event.data), maxBufferSize: 65_536};
```
*/
export type SSEParserOptions = {
	readonly onEvent: (event: SSEEvent) => void;
	/** Called with each comment line (`: text`), without the colon and one following space. */
	readonly onComment?: (comment: string) => void;
	/**
	The most characters one unfinished line or one event's data may hold; past it `feed` throws an `SSEParseError` of type `buffer_overflow` and the parser resets.

	@default 1048576
	*/
	readonly maxBufferSize?: number;
};

/**
What `createSSEParser` returns.

@example
```
const parser: SSEParser = createSSEParser({onEvent: console.log});
parser.feed('data: hi\n\n');
```
*/
export type SSEParser = {
	/** Parse the next chunk: text, or bytes (UTF-8, possibly split inside a character). Use one kind per stream. */
	feed(chunk: string | Uint8Array): void;
	/** Forget any unfinished line and event, e.g. before reading a new stream. `retry:` fields are ignored. */
	reset(): void;
};

/**
An event stream `createSSEParser` cannot read. `type` says why: `buffer_overflow` when a line or an event is longer than `maxBufferSize`. (askJSON and askText report it as a `StreamError` with code `sse_buffer_overflow`, this error its `cause`.)

@example
```
import {createSSEParser, SSEParseError} from 'signgate';

const parser = createSSEParser({onEvent: console.log, maxBufferSize: 1024});
try {
	parser.feed('data: ' + 'x'.repeat(2000));
} catch (error) {
	if (error instanceof SSEParseError && error.type === 'buffer_overflow') {
		console.warn('an event too long to keep; the parser has reset');
	}
}
```
*/
export class SSEParseError extends Error {
	readonly type: 'buffer_overflow';
}

/**
A push parser for server-sent events. Lines may end in LF, CR or CRLF and chunks may split anywhere. As in `EventSource`, an event is dispatched at the blank line that ends it; an unfinished one at the end of the stream is dropped.

@example
```
import {createSSEParser} from 'signgate';

const parser = createSSEParser({
	onEvent({data}) {
		if (data !== '[DONE]') {
			console.log(JSON.parse(data));
		}
	},
});
for await (const chunk of response.body) {
	parser.feed(chunk);
}
```
*/
export function createSSEParser(options: SSEParserOptions): SSEParser;

/**
What `createJSONParser` returns.

@example
```
const parser: JSONParser = createJSONParser();
parser.feed('[1, 2');
console.log(parser.value, parser.done); //=> [1] false
```
*/
export type JSONParser = {
	/**
	Parse the next piece of JSON text. Throws a `JSONParseError` as soon as the text cannot be JSON; after that every call throws the same error.

	@returns Whether `value` changed.
	*/
	feed(text: string): boolean;
	/** Finish: resolves a top-level number, checks the document is complete, and returns it. Throws a `JSONParseError` otherwise. */
	end(): unknown;
	/** The value so far, updated in place (see `AskJSONOptions.onPartial`); undefined before it starts. */
	readonly value: unknown;
	/** Whether the top-level value is complete (a top-level number only after `end()`). */
	readonly done: boolean;
};

/**
Text `createJSONParser` cannot accept as JSON. A `SyntaxError`, as with `JSON.parse`, and the message reads the same; `type` says what was wrong and `position` where, counted from the start of all the text fed.

@example
```
import {createJSONParser, JSONParseError} from 'signgate';

const parser = createJSONParser();
try {
	parser.feed('{"a": [1, ');
	parser.feed('2}');
} catch (error) {
	if (error instanceof JSONParseError) {
		console.log(error.type, error.position); //=> 'unexpected_character' 11
	}
}
```
*/
export class JSONParseError extends SyntaxError {
	/** `unexpected_character`, `invalid_number` (e.g. `01`, `1.`, `-`) or `unexpected_end` (the text stopped inside a value). */
	readonly type: 'unexpected_character' | 'invalid_number' | 'unexpected_end';
	/** Where the offending character or number starts; for `unexpected_end`, the length of the text. */
	readonly position: number;
}

/**
An incremental JSON parser: every character is examined once however the text is split, so feeding a whole answer piece by piece costs as much as one `JSON.parse`.

@example
```
import {createJSONParser} from 'signgate';

const parser = createJSONParser();
parser.feed('{"name": "Ada Lo');
console.log(parser.value); //=> {name: 'Ada Lo'}
parser.feed('velace", "born": 1815}');
console.log(parser.end()); //=> {name: 'Ada Lovelace', born: 1815}
```
*/
export function createJSONParser(): JSONParser;
