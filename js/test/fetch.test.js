// signedFetch (js/src/fetch.js): the sign endpoint, the gateway, their refusals, expiry, abort
// and timeout, against a real HTTP server on a local socket.
import assert from 'node:assert/strict';
import test from 'node:test';
import {AbortError, GatewayError, SignEndpointError, TimeoutError, UpstreamError} from '../src/errors.js';
import {askJSON} from '../src/ask.js';
import {signedFetch} from '../src/fetch.js';
import {assertSafe, closedPort, refuse, serve, SIGNATURE, startStream, streaming} from './server.js';

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

test('a sign endpoint that refuses is a SignEndpointError with its status and body', async t => {
	const {endpoint, log} = await serve(t, {
		sign(request, response) {
			response.writeHead(403, {'content-type': 'text/plain'});
			response.end('CSRF token missing');
		},
	});
	await assert.rejects(signedFetch(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof SignEndpointError);
		assert.equal(error.code, 'sign_failed');
		assert.equal(error.status, 403);
		assert.equal(error.body, 'CSRF token missing');
		assert.equal(error.error, undefined);
		assert.equal(error.retryAfter, undefined);
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign answered 403$/);
	});
	assert.equal(log.gateway.length, 0);
});

test('a sign endpoint\'s JSON error is kept as error, its message in the message, Retry-After as retryAfter', async t => {
	const body = JSON.stringify({error: {code: 'too_many_questions', message: 'at most 10 AI searches a minute; try again in 50 s'}});
	const {endpoint, log} = await serve(t, {
		sign(request, response) {
			response.writeHead(429, {'content-type': 'application/json', 'retry-after': '50'});
			response.end(body);
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof SignEndpointError);
		assert.equal(error.code, 'sign_failed');
		assert.equal(error.status, 429);
		assert.deepEqual(error.error, {code: 'too_many_questions', message: 'at most 10 AI searches a minute; try again in 50 s'});
		assert.equal(error.retryAfter, 50);
		assert.equal(error.body, body);
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign answered 429: at most 10 AI searches a minute; try again in 50 s$/);
	});
	assert.equal(log.gateway.length, 0);
});

test('a sign endpoint error that is not {"error": {"code", ...}} leaves error undefined', async t => {
	const bodies = [
		['{"error": "nope"}', undefined],
		['{"error": {"message": "no code"}}', undefined],
		['{"error": {"code": 7, "message": "a number"}}', undefined],
		['[1]', undefined],
		['null', undefined],
		['{"error": {"code": "no_message"}}', {code: 'no_message'}],
		['{"error": {"code": "odd", "message": 42}}', {code: 'odd', message: 42}],
	];
	for (const [body, expected] of bodies) {
		const {endpoint} = await serve(t, {
			sign(request, response) {
				response.writeHead(503, {'content-type': 'application/json', 'retry-after': new Date(Date.now() + 30_000).toUTCString()});
				response.end(body);
			},
		});
		await assert.rejects(signedFetch(endpoint, {}), error => {
			assert.deepEqual(error.error, expected, body);
			assert.match(error.message, /\/sign answered 503$/, 'only a string message goes into the message');
			assert.ok(error.retryAfter >= 29 && error.retryAfter <= 30, `retryAfter ${error.retryAfter} from an HTTP date`);
			return true;
		});
	}
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

for (const [status, code] of [[400, 'malformed'], [401, 'bad_signature'], [401, 'missing_header'], [403, 'upstream_not_allowed'], [409, 'replayed'], [413, 'body_too_large'], [403, 'policy_violation'], [429, 'requests_per_minute_exceeded'], [429, 'concurrent_streams_exceeded'], [429, 'tokens_per_day_exceeded'], [502, 'upstream_unreachable'], [503, 'at_capacity'], [503, 'store_unavailable'], [504, 'upstream_timeout']]) {
	test(`a gateway refusal ${status} ${code} is a GatewayError with that code, not retried`, async t => {
		const {endpoint, log} = await serve(t, {gateway: refuse(status, code)});
		await assert.rejects(signedFetch(endpoint, {question: 'q'}), error => {
			assert.ok(error instanceof GatewayError);
			assert.equal(error.code, code);
			assert.equal(error.status, status);
			assert.deepEqual(error.error, {code, message: `refused: ${code}`});
			assert.equal(error.retryAfter, undefined);
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
	await assert.rejects(signedFetch(endpoint, {question: 'q'}), error => {
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
	await assert.rejects(signedFetch(endpoint, {question: 'q'}), error => {
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
	await assert.rejects(signedFetch(endpoint, {question: 'q'}), UpstreamError);
	assert.equal(log.sign.length, 1);
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
	await assert.rejects(signedFetch(endpoint, {question: 'q'}), error => {
		assert.ok(error instanceof GatewayError);
		assert.equal(error.code, 'expired');
		assert.equal(error.status, 401);
		assert.equal(error.error.now, 1_700_000_000);
		return assertSafe(error, /was refused by the gateway: 401 expired/);
	});
	assert.equal(log.sign.length, 2);
	assert.equal(log.gateway.length, 2);
});

test('an already aborted signal rejects before anything is sent', async t => {
	const {endpoint, log} = await serve(t, {gateway: streaming(['{}'])});
	await assert.rejects(signedFetch(endpoint, {question: 'q'}, {signal: AbortSignal.abort()}), error => error instanceof AbortError && assertSafe(error, /\/sign was aborted$/));
	assert.equal(log.sign.length, 0);
});

test('aborting while the sign endpoint thinks names the sign endpoint', async t => {
	const {endpoint, log} = await serve(t, {
		sign() {}, // Never answers.
	});
	const controller = new AbortController();
	const pending = signedFetch(endpoint, {question: 'q'}, {signal: controller.signal});
	while (log.sign.length === 0) {
		await new Promise(resolve => setTimeout(resolve, 5));
	}

	controller.abort();
	await assert.rejects(pending, error => error instanceof AbortError && assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/sign was aborted$/));
	assert.equal(log.gateway.length, 0);
});

test('a gateway that does not answer in time is a TimeoutError', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway() {}, // Never answers.
	});
	await assert.rejects(signedFetch(endpoint, {question: 'q'}, {timeout: 200}), error => {
		assert.ok(error instanceof TimeoutError);
		assert.equal(error.code, 'timeout');
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions timed out after 200 ms$/);
	});
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

test('Retry-After becomes retryAfter in seconds, from delta-seconds or an HTTP date', async t => {
	const now = Date.now();
	const cases = [
		['42', 42],
		[' 7 ', 7],
		['0', 0],
		[new Date(now + 90_000).toUTCString(), 90],
		[new Date(now - 60_000).toUTCString(), 0],
		['soon', undefined],
		['-5', undefined],
		['1.5', undefined],
		['', undefined],
		['Sun, 06 Nov 1994 08:49:37 GMT', 0],
	];
	for (const [header, seconds] of cases) {
		const {endpoint} = await serve(t, {
			gateway(request, response) {
				response.writeHead(429, {'content-type': 'application/json', 'x-signgate-error': 'requests_per_minute_exceeded', 'retry-after': header});
				response.end(JSON.stringify({error: {code: 'requests_per_minute_exceeded', message: 'the user\'s limit of 30 requests per minute is reached', scope: 'user', limit: 30}}));
			},
		});
		await assert.rejects(signedFetch(endpoint, {}), error => {
			assert.ok(error instanceof GatewayError);
			assert.equal(error.code, 'requests_per_minute_exceeded');
			// An HTTP date has whole seconds, so the wait may come out a second shorter.
			assert.ok(seconds === undefined ? error.retryAfter === undefined : Math.abs(error.retryAfter - seconds) <= 1, `${header}: ${error.retryAfter}`);
			assert.deepEqual([error.error.scope, error.error.limit], ['user', 30]);
			return true;
		});
	}
});

test('an upstream\'s Retry-After is kept too', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			response.writeHead(429, {'content-type': 'application/json', 'retry-after': '20'});
			response.end(JSON.stringify({error: {message: 'slow down', type: 'requests', code: 'rate_limit_exceeded'}}));
		},
	});
	await assert.rejects(signedFetch(endpoint, {}), error => error instanceof UpstreamError && error.retryAfter === 20 && error.status === 429);
});

test('an upstream error names its kind in each API\'s words', async t => {
	const bodies = [
		[{error: {message: 'Invalid model', type: 'invalid_request_error', param: 'model', code: null}}, 'invalid_request_error'],
		[{type: 'error', error: {type: 'overloaded_error', message: 'Overloaded'}}, 'overloaded_error'],
		[{error: {code: 429, message: 'Quota exceeded', status: 'RESOURCE_EXHAUSTED'}}, 'RESOURCE_EXHAUSTED'],
		[{detail: 'not found'}, undefined],
	];
	for (const [body, kind] of bodies) {
		const {endpoint} = await serve(t, {
			gateway(request, response) {
				response.writeHead(429, {'content-type': 'application/json'});
				response.end(JSON.stringify(body));
			},
		});
		await assert.rejects(signedFetch(endpoint, {}), error => {
			assert.ok(error instanceof UpstreamError);
			assert.ok(error.message.endsWith(kind ? `answered 429 (${kind})` : 'answered 429'), error.message);
			return true;
		});
	}
});
