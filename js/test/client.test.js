// signedFetch and askJSON against a real HTTP server on a local socket, which plays the app's sign
// endpoint (/sign) and the gateway with the model behind it (/gateway/...).
import assert from 'node:assert/strict';
import {getEventListeners, once} from 'node:events';
import {createServer} from 'node:http';
import test from 'node:test';
import {
	AbortError,
	askJSON,
	GatewayError,
	OutputParseError,
	SignEndpointError,
	signedFetch,
	SigngateError,
	StreamError,
	TimeoutError,
	UpstreamError,
} from '../index.js';

const SIGNATURE = 'c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr';

const readBody = async request => {
	let body = '';
	for await (const chunk of request) {
		body += chunk;
	}

	return body;
};

const listen = async (t, handler) => {
	const server = createServer(handler);
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	t.after(() => {
		server.closeAllConnections();
		server.close();
	});
	return `http://127.0.0.1:${server.address().port}`;
};

const closedPort = async () => {
	const server = createServer();
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	const {port} = server.address();
	server.close();
	await once(server, 'close');
	return `http://127.0.0.1:${port}`;
};

/**
Starts the server. `gateway(request, response, {attempt, body})` answers the gateway's calls;
`sign(request, response, {body, base})`, if given, replaces the default sign endpoint.
Returns the sign endpoint's URL and a log of what each side received.
*/
const serve = async (t, {gateway, sign} = {}) => {
	const log = {sign: [], gateway: []};
	let base;
	base = await listen(t, async (request, response) => {
		const body = await readBody(request);
		const entry = {method: request.method, url: request.url, headers: request.headers, body};
		if (request.url.startsWith('/sign')) {
			log.sign.push(entry);
			if (sign) {
				return sign(request, response, {body, base});
			}

			response.setHeader('content-type', 'application/json');
			response.end(JSON.stringify({
				url: `${base}/gateway/v1/chat/completions?X-Sw-Expires=60&X-Sw-Signature=${SIGNATURE}${log.sign.length}`,
				method: 'POST',
				headers: {'content-type': 'application/json', 'x-model-hint': 'fast'},
				body: JSON.stringify({model: 'm', stream: true, messages: [{role: 'user', content: JSON.parse(body).question}]}),
			}));
		} else {
			log.gateway.push(entry);
			await gateway(request, response, {attempt: log.gateway.length, body});
		}
	});
	return {endpoint: `${base}/sign`, log, base};
};

const chunk = (content, finish = null) => ({
	id: 'chatcmpl-1',
	object: 'chat.completion.chunk',
	choices: [{index: 0, delta: content === undefined ? {} : {role: 'assistant', content}, finish_reason: finish}],
});

const startStream = response => {
	response.writeHead(200, {'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store'});
	response.flushHeaders();
};

const event = data => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

/** A gateway that streams `pieces` of the answer, then a stop chunk and [DONE]. */
const streaming = pieces => (request, response) => {
	startStream(response);
	for (const piece of pieces) {
		response.write(event(chunk(piece)));
	}

	response.end(event(chunk(undefined, 'stop')) + event('[DONE]'));
};

const refuse = (status, code, extra = {}) => (request, response) => {
	response.writeHead(status, {'content-type': 'application/json', 'x-signgate-error': code});
	response.end(JSON.stringify({error: {code, message: `refused: ${code}`, ...extra}}));
};

/** Every error must name what failed, and never carry the signed URL's query string. */
const assertSafe = (error, pattern) => {
	assert.ok(error instanceof SigngateError, `${error} is a SigngateError`);
	assert.match(error.message, pattern);
	const seen = new Set();
	const check = value => {
		if (value === null || typeof value !== 'object' || seen.has(value)) {
			return;
		}

		seen.add(value);
		for (const text of [value.message, value.stack, JSON.stringify(Object.assign({}, value))]) {
			assert.ok(!String(text).includes(SIGNATURE), `the signature leaked into ${text}`);
			assert.ok(!String(text).includes('X-Sw-'), `the query string leaked into ${text}`);
		}

		check(value.cause);
		check(value.error);
	};

	check(error);
	return true;
};

test('signedFetch signs through the app, then sends exactly the signed request without credentials', async t => {
	const {endpoint, log, base} = await serve(t, {gateway: streaming(['{}'])});
	const calls = [];
	const recordingFetch = (url, init) => {
		calls.push({url: String(url), init});
		return fetch(url, init);
	};

	const response = await signedFetch(endpoint, {question: 'Why?'}, {headers: {'x-csrf-token': 'token-1'}, fetch: recordingFetch});
	assert.equal(response.status, 200);
	assert.match(await response.text(), /\[DONE\]/);

	assert.equal(log.sign.length, 1);
	assert.equal(log.sign[0].method, 'POST');
	assert.equal(log.sign[0].headers['content-type'], 'application/json');
	assert.equal(log.sign[0].headers['x-csrf-token'], 'token-1');
	assert.deepEqual(JSON.parse(log.sign[0].body), {question: 'Why?'});

	const [gatewayCall] = log.gateway;
	assert.equal(gatewayCall.method, 'POST');
	assert.equal(gatewayCall.url, `/gateway/v1/chat/completions?X-Sw-Expires=60&X-Sw-Signature=${SIGNATURE}1`);
	assert.equal(gatewayCall.headers['content-type'], 'application/json');
	assert.equal(gatewayCall.headers['x-model-hint'], 'fast');
	assert.equal(gatewayCall.headers['x-csrf-token'], undefined, 'app headers stay with the app');
	assert.equal(gatewayCall.headers.cookie, undefined);
	assert.deepEqual(JSON.parse(gatewayCall.body), {model: 'm', stream: true, messages: [{role: 'user', content: 'Why?'}]});

	assert.equal(calls.length, 2);
	assert.equal(calls[0].url, endpoint);
	assert.equal(calls[0].init.credentials, 'same-origin');
	assert.equal(calls[1].url.startsWith(`${base}/gateway/`), true);
	assert.equal(calls[1].init.credentials, 'omit');
});

test('the credentials option applies to the sign endpoint only', async t => {
	const {endpoint} = await serve(t, {gateway: streaming(['{}'])});
	const credentials = [];
	await signedFetch(endpoint, {question: 'q'}, {
		credentials: 'include',
		fetch(url, init) {
			credentials.push(init.credentials);
			return fetch(url, init);
		},
	});
	assert.deepEqual(credentials, ['include', 'omit']);
});

test('a signed request without a body is sent without one', async t => {
	const {endpoint, log} = await serve(t, {
		sign(request, response, {base}) {
			response.end(JSON.stringify({url: `${base}/gateway/models?X-Sw-Signature=${SIGNATURE}`, method: 'GET', headers: {accept: 'application/json'}, body: null}));
		},
		gateway(request, response) {
			response.end('{"data": []}');
		},
	});
	const response = await signedFetch(endpoint, undefined);
	assert.deepEqual(await response.json(), {data: []});
	assert.equal(log.gateway[0].method, 'GET');
	assert.equal(log.gateway[0].body, '');
	assert.equal(log.gateway[0].headers.accept, 'application/json');
});

test('askJSON streams: onText gets each delta, onPartial each change, and the result is the parsed answer', async t => {
	const answer = '{"title": "Pancakes", "servings": 4, "steps": ["mix", "fry"], "note": "héllo wörld ¥ 😀"}';
	const pieces = ['{"ti', 'tle": "Panc', 'akes", "serv', 'ings": 4', ', "steps": ["mix"', ', "fry"]', ', "note": "héllo wörld ¥ 😀"}'];
	assert.equal(pieces.join(''), answer);
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			// Bytes cut anywhere, CRLF line ends, a comment: the stream as a proxy may deliver it.
			const wire = Buffer.from(`: connected\r\n\r\n${pieces.map(piece => event(chunk(piece))).join('').replaceAll('\n', '\r\n')}${event(chunk(undefined, 'stop'))}${event('[DONE]')}`);
			let at = 0;
			const next = () => {
				if (at >= wire.length) {
					return response.end();
				}

				response.write(wire.subarray(at, at + 13));
				at += 13;
				setImmediate(next);
			};

			next();
		},
	});

	const deltas = [];
	const partials = [];
	const result = await askJSON(endpoint, {question: 'pancakes'}, {
		onText: delta => deltas.push(delta),
		onPartial: partial => partials.push(structuredClone(partial)),
	});
	assert.deepEqual(result, JSON.parse(answer));
	assert.deepEqual(deltas, pieces);
	// Seven deltas, six changes: "ings\": 4" completes no value (4 might go on), so no call.
	assert.deepEqual(partials, [
		{},
		{title: 'Panc'},
		{title: 'Pancakes'},
		{title: 'Pancakes', servings: 4, steps: ['mix']},
		{title: 'Pancakes', servings: 4, steps: ['mix', 'fry']},
		{title: 'Pancakes', servings: 4, steps: ['mix', 'fry'], note: 'héllo wörld ¥ 😀'},
	]);
	for (let index = 1; index < partials.length; index++) {
		assert.notDeepEqual(partials[index], partials[index - 1], 'onPartial is called only on a change');
	}
});

test('askJSON hands out the first delta before the gateway has sent the rest', {timeout: 10_000}, async t => {
	let firstSeen;
	const seen = new Promise(resolve => {
		firstSeen = resolve;
	});
	const {endpoint} = await serve(t, {
		async gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": ')));
			await seen; // Deadlocks (and times out) if the client waits for the whole body.
			response.end(event(chunk('1}', 'stop')) + event('[DONE]'));
		},
	});
	const result = await askJSON(endpoint, {question: 'q'}, {
		onText(delta) {
			if (delta === '{"a": ') {
				firstSeen();
			}
		},
	});
	assert.deepEqual(result, {a: 1});
});

test('askJSON returns at [DONE] without waiting for the connection to close', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('[1, 2]')) + event('[DONE]'));
		},
	});
	assert.deepEqual(await askJSON(endpoint, {question: 'q'}), [1, 2]);
});

test('askJSON accepts a stream that ends after a finish_reason without [DONE]', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('{"ok": true}')) + event(chunk(undefined, 'stop')));
		},
	});
	assert.deepEqual(await askJSON(endpoint, {question: 'q'}), {ok: true});
});

test('askJSON reads a plain JSON chat completion too', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			response.setHeader('content-type', 'application/json');
			response.end(JSON.stringify({choices: [{index: 0, message: {role: 'assistant', content: '{"n": [1, 2]}'}, finish_reason: 'stop'}]}));
		},
	});
	const deltas = [];
	const partials = [];
	const result = await askJSON(endpoint, {question: 'q'}, {onText: delta => deltas.push(delta), onPartial: partial => partials.push(structuredClone(partial))});
	assert.deepEqual(result, {n: [1, 2]});
	assert.deepEqual(deltas, ['{"n": [1, 2]}']);
	assert.deepEqual(partials, [{n: [1, 2]}]);
});

test('askJSON accepts an answer fenced as a markdown code block', async t => {
	const {endpoint} = await serve(t, {gateway: streaming(['```json\n{"a"', ': 1}\n```'])});
	assert.deepEqual(await askJSON(endpoint, {question: 'q'}), {a: 1});
});

test('an answer that is not JSON is an OutputParseError that keeps the text', async t => {
	const {endpoint} = await serve(t, {gateway: streaming(['Sure! Here', ' is your JSON: {"a": 1}'])});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof OutputParseError);
		assert.equal(error.code, 'invalid_output');
		assert.equal(error.text, 'Sure! Here is your JSON: {"a": 1}');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions: the model's answer is not JSON$/);
	});
});

test('an answer cut off by the token limit says so', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('{"a": [1, 2')) + event(chunk(undefined, 'length')) + event('[DONE]'));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof OutputParseError && /finish_reason: length/.test(error.message));
});

test('a sign endpoint that refuses is a SignEndpointError with its status and body', async t => {
	const {endpoint, log} = await serve(t, {
		sign(request, response) {
			response.writeHead(403, {'content-type': 'text/plain'});
			response.end('CSRF token missing');
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof SignEndpointError);
		assert.equal(error.code, 'sign_failed');
		assert.equal(error.status, 403);
		assert.equal(error.body, 'CSRF token missing');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign answered 403$/);
	});
	assert.equal(log.gateway.length, 0);
});

test('a sign endpoint that answers something else than a signed request is a SignEndpointError', async t => {
	const {endpoint} = await serve(t, {
		sign(request, response) {
			response.end('<html>login</html>');
		},
	});
	await assert.rejects(signedFetch(`${endpoint}?page=2`, {}), error => {
		assert.ok(error instanceof SignEndpointError);
		assert.equal(error.status, 200);
		assert.equal(error.body, '<html>login</html>');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign did not answer with a signed request/);
	});
});

test('an unreachable sign endpoint is a SignEndpointError with status 0', async () => {
	const endpoint = `${await closedPort()}/sign`;
	await assert.rejects(signedFetch(endpoint, {}), error => {
		assert.ok(error instanceof SignEndpointError);
		assert.equal(error.status, 0);
		assert.ok(error.cause);
		return assertSafe(error, /\/sign failed: the sign endpoint could not be reached/);
	});
});

for (const [status, code] of [[400, 'malformed'], [401, 'bad_signature'], [401, 'missing_header'], [403, 'upstream_not_allowed'], [409, 'replayed'], [413, 'body_too_large'], [429, 'rate_limited'], [502, 'upstream_unreachable'], [503, 'at_capacity'], [504, 'upstream_timeout']]) {
	test(`a gateway refusal ${status} ${code} is a GatewayError with that code, not retried`, async t => {
		const {endpoint, log} = await serve(t, {gateway: refuse(status, code)});
		await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
			assert.ok(error instanceof GatewayError);
			assert.equal(error.code, code);
			assert.equal(error.status, status);
			assert.deepEqual(error.error, {code, message: `refused: ${code}`});
			return assertSafe(error, new RegExp(String.raw`^POST http://127\.0\.0\.1:\d+/gateway/v1/chat/completions was refused by the gateway: ${status} ${code}: refused: ${code}$`));
		});
		assert.equal(log.sign.length, 1);
		assert.equal(log.gateway.length, 1);
	});
}

test('an unreachable gateway is a GatewayError network_error', async t => {
	const gateway = await closedPort();
	const {endpoint} = await serve(t, {
		sign(request, response) {
			response.end(JSON.stringify({url: `${gateway}/v1/chat/completions?X-Sw-Signature=${SIGNATURE}`, method: 'POST', headers: {}, body: '{}'}));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof GatewayError);
		assert.equal(error.code, 'network_error');
		assert.equal(error.status, 0);
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions failed: the gateway could not be reached$/);
	});
});

test('an upstream error passes through as an UpstreamError keeping its error object', async t => {
	const upstreamError = {message: 'Rate limit reached for gpt-4o-mini', type: 'requests', code: 'rate_limit_exceeded', param: null};
	const {endpoint, log} = await serve(t, {
		gateway(request, response) {
			response.writeHead(429, {'content-type': 'application/json'});
			response.end(JSON.stringify({error: upstreamError}));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof UpstreamError);
		assert.equal(error.code, 'upstream_error');
		assert.equal(error.status, 429);
		assert.deepEqual(error.error, upstreamError);
		assert.equal(error.body, JSON.stringify({error: upstreamError}));
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions: the upstream answered 429 \(rate_limit_exceeded\)$/);
	});
	assert.equal(log.gateway.length, 1);
});

test('an upstream 401 "expired" without the gateway header is the upstream\'s and is not retried', async t => {
	const {endpoint, log} = await serve(t, {
		gateway(request, response) {
			response.writeHead(401, {'content-type': 'application/json'});
			response.end(JSON.stringify({error: {message: 'token expired', type: 'auth', code: 'expired'}}));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), UpstreamError);
	assert.equal(log.sign.length, 1);
});

test('an error event inside the stream is an UpstreamError', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('{"a"')) + event({error: {message: 'overloaded', type: 'server_error'}}));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof UpstreamError && error.status === 200 && error.error.message === 'overloaded' && assertSafe(error, /sent an error in the stream/));
});

test('a 2xx answer that is not a chat completion is an UpstreamError', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			response.end('<html>captive portal</html>');
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof UpstreamError && error.body === '<html>captive portal</html>' && assertSafe(error, /answered 200 without a chat completion/));
});

test('a stream the gateway aborts midway is a StreamError and is not retried', async t => {
	const {endpoint, log} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": 1')));
			setTimeout(() => response.destroy(), 50);
		},
	});
	const deltas = [];
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {onText: delta => deltas.push(delta)}), error => {
		assert.ok(error instanceof StreamError);
		assert.equal(error.code, 'stream_broken');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions: the stream broke before the answer was complete$/);
	});
	assert.deepEqual(deltas, ['{"a": 1']);
	assert.equal(log.sign.length, 1, 'no new signature once the answer has begun');
	assert.equal(log.gateway.length, 1);
});

test('a stream that ends without [DONE] or a finish_reason is a StreamError', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('{"a": 1}')));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof StreamError && assertSafe(error, /the stream ended before the answer was complete$/));
});

test('an event longer than the SSE buffer is a StreamError sse_buffer_overflow naming the request', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('x'.repeat(2 ** 20))));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof StreamError && error.code === 'sse_buffer_overflow' && assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions: an event-stream line/));
});

test('an expired URL is signed afresh once, and the second attempt answers', async t => {
	const {endpoint, log} = await serve(t, {
		gateway(request, response, {attempt}) {
			if (attempt === 1) {
				return refuse(401, 'expired', {now: 1_700_000_000})(request, response);
			}

			streaming(['{"fresh": true}'])(request, response);
		},
	});
	assert.deepEqual(await askJSON(endpoint, {question: 'q'}, {headers: {'x-csrf-token': 't'}}), {fresh: true});
	assert.equal(log.sign.length, 2);
	assert.deepEqual(log.sign.map(call => call.headers['x-csrf-token']), ['t', 't']);
	assert.deepEqual(log.gateway.map(call => call.url.endsWith(`${SIGNATURE}${log.gateway.indexOf(call) + 1}`)), [true, true], 'each attempt used its own signature');
});

test('signedFetch re-signs an expired URL too', async t => {
	const {endpoint, log} = await serve(t, {
		gateway(request, response, {attempt}) {
			if (attempt === 1) {
				return refuse(401, 'expired', {now: 1_700_000_000})(request, response);
			}

			response.end('ok');
		},
	});
	assert.equal(await (await signedFetch(endpoint, {question: 'q'})).text(), 'ok');
	assert.equal(log.sign.length, 2);
});

test('expired twice is a GatewayError expired, after exactly one retry', async t => {
	const {endpoint, log} = await serve(t, {gateway: refuse(401, 'expired', {now: 1_700_000_000})});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof GatewayError);
		assert.equal(error.code, 'expired');
		assert.equal(error.status, 401);
		assert.equal(error.error.now, 1_700_000_000);
		return assertSafe(error, /was refused by the gateway: 401 expired/);
	});
	assert.equal(log.sign.length, 2);
	assert.equal(log.gateway.length, 2);
});

test('aborting midway rejects with AbortError and closes the connection', {timeout: 10_000}, async t => {
	let gatewayClosed;
	const closed = new Promise(resolve => {
		gatewayClosed = resolve;
	});
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": ')));
			response.on('close', gatewayClosed);
		},
	});
	const controller = new AbortController();
	const reason = new Error('user pressed stop');
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {signal: controller.signal, onText: () => controller.abort(reason)}), error => {
		assert.ok(error instanceof AbortError);
		assert.equal(error.code, 'aborted');
		assert.equal(error.cause, reason);
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions was aborted$/);
	});
	await closed;
	assert.equal(getEventListeners(controller.signal, 'abort').length, 0, 'askJSON leaves no listener behind');
});

test('an already aborted signal rejects before anything is sent', async t => {
	const {endpoint, log} = await serve(t, {gateway: streaming(['{}'])});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {signal: AbortSignal.abort()}), error => error instanceof AbortError && assertSafe(error, /\/sign was aborted$/));
	assert.equal(log.sign.length, 0);
});

test('aborting while the sign endpoint thinks names the sign endpoint', async t => {
	const {endpoint, log} = await serve(t, {
		sign() {}, // Never answers.
	});
	const controller = new AbortController();
	const pending = askJSON(endpoint, {question: 'q'}, {signal: controller.signal});
	while (log.sign.length === 0) {
		await new Promise(resolve => setTimeout(resolve, 5));
	}

	controller.abort();
	await assert.rejects(pending, error => error instanceof AbortError && assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign was aborted$/));
	assert.equal(log.gateway.length, 0);
});

test('a finished call leaves no listener on the signal', async t => {
	const {endpoint} = await serve(t, {gateway: streaming(['{}'])});
	const controller = new AbortController();
	// Node's fetch keeps listeners of its own on a signal it was given; keep it away from this one.
	const fetchWithoutSignal = (url, init) => fetch(url, {...init, signal: undefined});
	await askJSON(endpoint, {question: 'q'}, {signal: controller.signal, timeout: 5000});
	await askJSON(endpoint, {question: 'q'}, {signal: controller.signal, fetch: fetchWithoutSignal});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {signal: controller.signal, timeout: 5000, fetch: () => Promise.reject(new TypeError('offline'))}), SignEndpointError);
	await (await signedFetch(endpoint, {question: 'q'}, {signal: controller.signal, fetch: fetchWithoutSignal})).text();
	assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('a gateway that does not answer in time is a TimeoutError', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway() {}, // Never answers.
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {timeout: 200}), error => {
		assert.ok(error instanceof TimeoutError);
		assert.equal(error.code, 'timeout');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions timed out after 200 ms$/);
	});
});

test('askJSON\'s timeout covers reading the stream', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": ')));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {timeout: 200}), TimeoutError);
});

test('signedFetch\'s timeout stops once the response has come; the signal still governs the body', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write('data: 1\n\n');
			setTimeout(() => response.end('data: 2\n\n'), 400);
		},
	});
	const response = await signedFetch(endpoint, {question: 'q'}, {timeout: 200});
	assert.equal(await response.text(), 'data: 1\n\ndata: 2\n\n');

	const controller = new AbortController();
	const second = await signedFetch(endpoint, {question: 'q'}, {timeout: 200, signal: controller.signal});
	const reading = second.text();
	controller.abort();
	await assert.rejects(reading, {name: 'AbortError'});
});

test('an error thrown by a callback comes through unchanged and stops the stream', async t => {
	let gatewayClosed;
	const closed = new Promise(resolve => {
		gatewayClosed = resolve;
	});
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": ')));
			response.on('close', gatewayClosed);
		},
	});
	const bug = new RangeError('bug in the page');
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {
		onText() {
			throw bug;
		},
	}), error => error === bug);
	await closed;
});
