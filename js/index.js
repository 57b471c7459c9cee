// signgate's browser helper: ask the app's backend for a signed request, send it to the gateway,
// read the (streamed) chat completion and return the model's JSON answer.
//
// Errors, one tree; every one has a stable `code`:
//
//   SigngateError
//   ├── SignEndpointError  sign_failed                  the app's sign endpoint failed
//   ├── GatewayError       <the gateway's code>         the gateway refused (x-signgate-error)
//   ├── UpstreamError      upstream_error               the model API answered with an error
//   ├── StreamError        stream_broken | sse_buffer_overflow
//   ├── OutputParseError   invalid_output               the answer is not JSON
//   ├── AbortError         aborted
//   └── TimeoutError       timeout
//
// A signed URL's query string holds its signature: no message, field or log line here contains it,
// and no error keeps the Response (whose `url` has it).

export class SigngateError extends Error {
	name = 'SigngateError';

	constructor(message, {cause, ...fields} = {}) {
		super(message, cause && {cause});
		Object.assign(this, fields);
	}
}

export class SignEndpointError extends SigngateError {
	name = 'SignEndpointError';
	code = 'sign_failed';
}

// `code` is the gateway's own (expired, bad_signature, ...), or network_error when it was unreachable.
export class GatewayError extends SigngateError {
	name = 'GatewayError';
}

export class UpstreamError extends SigngateError {
	name = 'UpstreamError';
	code = 'upstream_error';
}

export class StreamError extends SigngateError {
	name = 'StreamError';

	// Not a field: a field would overwrite the sse_buffer_overflow code the SSE parser passes.
	constructor(message, options) {
		super(message, {code: 'stream_broken', ...options});
	}
}

export class OutputParseError extends SigngateError {
	name = 'OutputParseError';
	code = 'invalid_output';
}

export class AbortError extends SigngateError {
	name = 'AbortError';
	code = 'aborted';
}

export class TimeoutError extends SigngateError {
	name = 'TimeoutError';
	code = 'timeout';
}

const bare = url => String(url).replace(/[?#][^]*/, '');
const parseOrUndefined = text => {
	try {
		return JSON.parse(text);
	} catch {}
};

/* Server-sent events (the WHATWG EventSource rules), push style: feed() chunks as they come. */
export const createSSEParser = ({onEvent, onComment, maxBufferSize = 2 ** 20}) => {
	let decoder, pending, data, event, id, skipLF;
	const reset = () => {
		decoder = new TextDecoder();
		pending = '';
		data = event = undefined;
		skipLF = false;
	};

	const check = size => {
		if (size > maxBufferSize) {
			reset();
			throw new StreamError(`an event-stream line or event is longer than ${maxBufferSize} characters`, {code: 'sse_buffer_overflow'});
		}
	};

	const line = text => {
		if (!text) {
			// A blank line ends the event; an event without data is dropped, as EventSource does.
			if (data !== undefined) {
				const payload = {data, event, id};
				data = event = undefined;
				onEvent(payload);
			}

			event = undefined;
			return;
		}

		if (text[0] === ':') {
			return onComment?.(text.slice(text[1] === ' ' ? 2 : 1));
		}

		const colon = text.indexOf(':');
		const field = colon < 0 ? text : text.slice(0, colon);
		let value = colon < 0 ? '' : text.slice(colon + 1);
		if (value[0] === ' ') {
			value = value.slice(1);
		}

		if (field === 'data') {
			data = data === undefined ? value : data + '\n' + value;
			check(data.length);
		} else if (field === 'event') {
			event = value;
		} else if (field === 'id' && !value.includes('\0')) {
			id = value;
		}
	};

	reset();
	return {
		feed(chunk) {
			let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, {stream: true});
			if (text) {
				// A CRLF split across two chunks: the CR already ended the line.
				if (skipLF && text[0] === '\n') {
					text = text.slice(1);
				}

				skipLF = text.at(-1) === '\r';
			}

			// Only the new text is searched for line ends, so a long line fed in many chunks stays linear.
			const lineEnd = /\r\n?|\n/g;
			let start = 0;
			for (let match; (match = lineEnd.exec(text));) {
				const rest = pending;
				pending = '';
				line(rest + text.slice(start, match.index));
				start = lineEnd.lastIndex;
			}

			pending += text.slice(start);
			check(pending.length);
		},
		reset,
	};
};

/* Incremental JSON: every character is looked at once, whatever the chunking. */
const WHITESPACE = ' \t\n\r';
const ESCAPES = {'"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t'};
const LITERALS = {t: 'true', f: 'false', n: 'null'};
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

export const createJSONParser = () => {
	// States: 0 value, 1 after a value, 2 key or '}', 3 ':', 4 string, 5 after '\', 6 \u digits,
	// 7 number, 8 true/false/null, 9 done, 10 value or ']', 11 key.
	const stack = [];
	let root;
	let key;
	let state = 0;
	let token = '';
	let isKey;
	let shown = 0;
	let hex;
	let changed;
	let offset = 0;
	let failure;

	const fail = (char, at) => {
		throw new SyntaxError(char ? `Unexpected ${JSON.stringify(char)} at position ${at} in JSON` : 'Unexpected end of JSON input');
	};

	// Adds a value to the open container, or replaces the last one (a string that grew).
	const put = (value, replace) => {
		const top = stack.at(-1);
		if (!top) {
			root = value;
		} else if (Array.isArray(top)) {
			top[replace ? top.length - 1 : top.length] = value;
		} else if (key === '__proto__') {
			// An own property, as JSON.parse makes it, not the object's prototype.
			Object.defineProperty(top, key, {value, writable: true, enumerable: true, configurable: true});
		} else {
			top[key] = value;
		}

		changed = true;
	};

	const after = () => {
		state = stack.length ? 1 : 9;
	};

	const open = value => {
		put(value);
		stack.push(value);
	};

	const number = () => {
		if (!NUMBER.test(token)) {
			fail(token, offset);
		}

		put(Number(token));
		after();
	};

	const step = (char, at) => {
		if (state === 7) {
			if ('0123456789+-.eE'.includes(char)) {
				token += char;
				return;
			}

			number();
		}

		if (state === 8) {
			if (char !== token[shown]) {
				fail(char, at);
			}

			if (++shown === token.length) {
				put(JSON.parse(token));
				after();
			}

			return;
		}

		if (WHITESPACE.includes(char)) {
			return;
		}

		if (state === 10) {
			if (char === ']') {
				stack.pop();
				return after();
			}

			state = 0;
		}

		if (state === 0) {
			if (char === '{') {
				open({});
				state = 2;
			} else if (char === '[') {
				open([]);
				state = 10;
			} else if (char === '"') {
				put('');
				isKey = false;
				state = 4;
			} else if (char === '-' || (char >= '0' && char <= '9')) {
				token = char;
				offset = at;
				state = 7;
			} else if (LITERALS[char]) {
				token = LITERALS[char];
				shown = 1;
				state = 8;
			} else {
				fail(char, at);
			}
		} else if (state === 1 && char === ',') {
			state = Array.isArray(stack.at(-1)) ? 0 : 11;
		} else if (state === 1 || state === 2) {
			if (char === (Array.isArray(stack.at(-1)) ? ']' : '}')) {
				stack.pop();
				after();
			} else if (state === 2 && char === '"') {
				isKey = true;
				state = 4;
			} else {
				fail(char, at);
			}
		} else if (state === 11 && char === '"') {
			isKey = true;
			state = 4;
		} else if (state === 3 && char === ':') {
			state = 0;
		} else {
			fail(char, at);
		}

		if (state === 4) {
			token = '';
			shown = 0;
		}
	};

	let position = 0;
	const parser = {
		get value() {
			return root;
		},
		get done() {
			return state === 9;
		},
		feed(text) {
			if (failure) {
				throw failure;
			}

			changed = false;
			try {
				let run = 0;
				const length = text.length;
				for (let index = 0; index < length; index++) {
					const char = text[index];
					if (state === 4) {
						if (char === '"' || char === '\\' || char < ' ') {
							token += text.slice(run, index);
							if (char === '\\') {
								state = 5;
							} else if (char === '"') {
								if (isKey) {
									key = token;
									state = 3;
								} else {
									if (token.length !== shown) {
										put(token, true);
									}

									after();
								}
							} else {
								fail(char, position + index);
							}
						}
					} else if (state === 5) {
						if (char === 'u') {
							hex = '';
							state = 6;
						} else if (ESCAPES[char]) {
							token += ESCAPES[char];
							state = 4;
							run = index + 1;
						} else {
							fail(char, position + index);
						}
					} else if (state === 6) {
						if (!/[\da-fA-F]/.test(char)) {
							fail(char, position + index);
						}

						hex += char;
						if (hex.length === 4) {
							token += String.fromCharCode(Number.parseInt(hex, 16));
							state = 4;
							run = index + 1;
						}
					} else {
						step(char, position + index);
						run = index + 1;
					}
				}

				if (state === 4) {
					token += text.slice(run);
				}

				// A string value in progress is shown as far as it has come (keys are not).
				if (state > 3 && state < 7 && !isKey && token.length !== shown) {
					put(token, true);
					shown = token.length;
				}

				position += length;
				return changed;
			} catch (error) {
				throw (failure = error);
			}
		},
		end() {
			if (state === 7 && !stack.length) {
				parser.feed(' ');
			}

			if (failure) {
				throw failure;
			}

			if (state !== 9) {
				fail();
			}

			return root;
		},
	};
	return parser;
};

const run = async (options, call, keepListening) => {
	const {signal, timeout} = options;
	const context = {where: ''};
	let controller;
	let timer;
	let timedOut;
	const abort = () => controller.abort(signal.reason);
	if (timeout != null && timeout < 2 ** 31) {
		controller = new AbortController();
		if (signal?.aborted) {
			abort();
		}

		// Kept by signedFetch: the caller still reads the body, and its signal must still stop that.
		signal?.addEventListener('abort', abort, {once: true});
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
			throw timedOut
				? new TimeoutError(`${context.where} timed out after ${timeout} ms`, {cause: error})
				: new AbortError(`${context.where} was aborted`, {cause: signal.reason});
		}

		throw error;
	} finally {
		clearTimeout(timer);
		if (!keepListening) {
			signal?.removeEventListener('abort', abort);
		}
	}
};

const request = async (signEndpoint, payload, options, signal, context) => {
	const fetch_ = options.fetch ?? fetch;
	for (let retried = false; ; retried = true) {
		context.where = 'POST ' + bare(signEndpoint);
		const headers = new Headers(options.headers);
		if (!headers.has('content-type')) {
			headers.set('content-type', 'application/json');
		}

		let response;
		let text;
		try {
			response = await fetch_(signEndpoint, {
				method: 'POST',
				headers,
				body: JSON.stringify(payload),
				credentials: options.credentials ?? 'same-origin',
				signal,
			});
			text = await response.text();
		} catch (cause) {
			throw new SignEndpointError(`${context.where} failed: the sign endpoint could not be reached`, {status: response?.status ?? 0, cause});
		}

		if (!response.ok) {
			throw new SignEndpointError(`${context.where} answered ${response.status}`, {status: response.status, body: text});
		}

		const signed = parseOrUndefined(text);
		if (typeof signed?.url !== 'string') {
			throw new SignEndpointError(`${context.where} did not answer with a signed request {url, method, headers, body}`, {status: response.status, body: text});
		}

		context.where = `${signed.method} ${bare(signed.url)}`;
		try {
			// Exactly what the backend signed; the gateway never gets the app's cookies.
			response = await fetch_(signed.url, {
				method: signed.method,
				headers: signed.headers,
				body: signed.body,
				credentials: 'omit',
				signal,
			});
		} catch (cause) {
			throw new GatewayError(`${context.where} failed: the gateway could not be reached`, {code: 'network_error', status: 0, cause});
		}

		if (response.ok) {
			return response;
		}

		const {status} = response;
		const code = response.headers.get('x-signgate-error');
		text = await response.text().catch(() => '');
		const error = parseOrUndefined(text)?.error;
		if (code) {
			// An expired URL is the one refusal a fresh signature cures; the answer has not begun.
			if (code === 'expired' && status === 401 && !retried) {
				continue;
			}

			throw new GatewayError(`${context.where} was refused by the gateway: ${status} ${code}${error?.message ? ': ' + error.message : ''}`, {code, status, error: error ?? {code}});
		}

		const kind = error?.code ?? error?.type;
		throw new UpstreamError(`${context.where}: the upstream answered ${status}${kind ? ` (${kind})` : ''}`, {status, error, body: text});
	}
};

export const signedFetch = (signEndpoint, payload, options = {}) =>
	run(options, (signal, context) => request(signEndpoint, payload, options, signal, context), true);

export const askJSON = (signEndpoint, payload, options = {}) => run(options, async (signal, context) => {
	const response = await request(signEndpoint, payload, options, signal, context);
	const {where} = context;
	let parser = createJSONParser();
	let text = '';
	let finish;
	const take = delta => {
		text += delta;
		options.onText?.(delta);
		let changed;
		try {
			changed = parser?.feed(delta);
		} catch {
			parser = undefined; // Not JSON as it stands; the end may still be (see below).
		}

		if (changed) {
			options.onPartial?.(parser.value);
		}
	};

	if (/text\/event-stream/.test(response.headers.get('content-type'))) {
		let complete;
		const events = createSSEParser({
			onEvent({data}) {
				if (data === '[DONE]') {
					complete = true;
				}

				if (complete) {
					return;
				}

				const chunk = parseOrUndefined(data);
				if (chunk?.error) {
					throw new UpstreamError(`${where}: the upstream sent an error in the stream`, {status: response.status, error: chunk.error});
				}

				const choice = chunk?.choices?.[0];
				if (choice?.delta?.content) {
					take(choice.delta.content);
				}

				finish = choice?.finish_reason || finish;
			},
		});
		const reader = response.body.getReader();
		try {
			while (!complete) {
				let chunk;
				try {
					chunk = await reader.read();
				} catch (cause) {
					if (finish) {
						break;
					}

					throw new StreamError(`${where}: the stream broke before the answer was complete`, {cause});
				}

				if (chunk.done) {
					break;
				}

				try {
					events.feed(chunk.value);
				} catch (error) {
					if (error.code === 'sse_buffer_overflow') {
						error.message = `${where}: ${error.message}`;
					}

					throw error;
				}
			}
		} finally {
			reader.cancel().catch(() => {});
		}

		if (!complete && !finish) {
			throw new StreamError(`${where}: the stream ended before the answer was complete`);
		}
	} else {
		const body = await response.text();
		const choice = parseOrUndefined(body)?.choices?.[0];
		if (!choice?.message) {
			throw new UpstreamError(`${where}: the upstream answered ${response.status} without a chat completion`, {status: response.status, body});
		}

		if (choice.message.content) {
			take(choice.message.content);
		}

		finish = choice.finish_reason;
	}

	if (parser) {
		try {
			return parser.end();
		} catch {}
	}

	try {
		// A model without a JSON mode often fences its answer: ```json ... ```
		return JSON.parse(text.trim().replace(/^```\w*|```$/g, ''));
	} catch (cause) {
		throw new OutputParseError(`${where}: the model's answer is not JSON${finish && finish !== 'stop' ? ` (finish_reason: ${finish})` : ''}`, {text, cause});
	}
});
