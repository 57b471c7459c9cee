// askJSON in the shipped module (js/index.js), end to end against a real HTTP server on a local
// socket: streaming, partial objects, the answer's errors, abort and timeout while it streams.
import assert from 'node:assert/strict';
import {getEventListeners} from 'node:events';
import test from 'node:test';
import {AbortError, askJSON, askText, OutputParseError, SignEndpointError, signedFetch, StreamError, TimeoutError, UpstreamError} from '../index.js';
import {streams, wholes} from './answers.js';
import {assertSafe, chunk, event, refuse, serve, SIGNATURE, startStream, streaming} from './server.js';

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
		return assertSafe(error, /^POST http:\/\/127\.0\.0\.1:\d+\/gateway\/v1\/chat\/completions: the model's answer is not JSON \(stop reason: stop\)$/);
	});
});

test('an answer cut off by the token limit says so', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.end(event(chunk('{"a": [1, 2')) + event(chunk(undefined, 'length')) + event('[DONE]'));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof OutputParseError && / \(stop reason: length\)$/.test(error.message));
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

test('a 2xx answer that is not a model\'s answer is an UpstreamError', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			response.end('<html>captive portal</html>');
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}), error => error instanceof UpstreamError && error.body === '<html>captive portal</html>' && assertSafe(error, /answered 200 with something that is not a model's answer$/));
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

test('askJSON\'s timeout covers reading the stream', {timeout: 10_000}, async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response) {
			startStream(response);
			response.write(event(chunk('{"a": ')));
		},
	});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {timeout: 200}), TimeoutError);
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

const FORMATS = Object.keys(streams);
const RECIPE = {title: 'Pancakes', servings: 4, steps: ['mix', 'fry'], note: 'héllo wörld ¥ 😀'};
const RECIPE_PIECES = ['{"ti', 'tle": "Panc', 'akes", "serv', 'ings": 4', ', "steps": ["mix"', ', "fry"]', ', "note": "héllo wörld ¥ 😀"}'];

/** A gateway that answers with `body`: an event stream (a string), or JSON (an object). */
const answering = body => (request, response) => {
	if (typeof body === 'string') {
		startStream(response);
		response.end(body);
	} else {
		response.setHeader('content-type', 'application/json');
		response.end(JSON.stringify(body));
	}
};

const askRecording = async (endpoint, options = {}) => {
	const deltas = [];
	const partials = [];
	const result = await askJSON(endpoint, {question: 'q'}, {
		onText: delta => deltas.push(delta),
		onPartial: partial => partials.push(structuredClone(partial)),
		...options,
	});
	return {result, deltas, partials};
};

test('askJSON reads every API\'s stream, as text or as a tool call, with the same partial objects', async t => {
	let expected;
	for (const format of FORMATS) {
		for (const call of [false, true]) {
			const {endpoint} = await serve(t, {gateway: answering(streams[format](RECIPE_PIECES, call))});
			const {result, deltas, partials} = await askRecording(endpoint);
			const where = `${format}${call ? ', tool call' : ''}`;
			assert.deepEqual(result, RECIPE, where);
			if (call && format === 'gemini') {
				// Gemini sends a call's arguments whole: one delta, one partial, the whole object.
				assert.deepEqual(deltas, [JSON.stringify(RECIPE)], where);
				assert.deepEqual(partials, [RECIPE], where);
				continue;
			}

			assert.deepEqual(deltas, RECIPE_PIECES, where);
			expected ??= partials;
			assert.deepEqual(partials, expected, where);
		}
	}

	assert.equal(expected.length, 6);
});

test('askJSON reads every API\'s whole answer, as text or as a tool call', async t => {
	for (const format of FORMATS) {
		for (const call of [false, true]) {
			const {endpoint} = await serve(t, {gateway: answering(wholes[format](JSON.stringify(RECIPE), call))});
			const {result, partials} = await askRecording(endpoint);
			assert.deepEqual(result, RECIPE, `${format}${call ? ', tool call' : ''}`);
			assert.deepEqual(partials, [RECIPE]);
		}
	}
});

test('askJSON with a format reads the answer as that API', async t => {
	for (const format of FORMATS) {
		const {endpoint} = await serve(t, {gateway: answering(streams[format](RECIPE_PIECES, true))});
		assert.deepEqual(await askJSON(endpoint, {question: 'q'}, {format}), RECIPE, format);
	}
});

test('askJSON with a format that the answer is not in: the stream has no answer', async t => {
	const {endpoint} = await serve(t, {gateway: answering(streams.gemini(RECIPE_PIECES, false))});
	await assert.rejects(askJSON(endpoint, {question: 'q'}, {format: 'anthropic'}), error => error instanceof StreamError && assertSafe(error, /the stream ended before the answer was complete$/));
});

test('an unknown format is a TypeError naming the known ones, before anything is signed', async t => {
	const {endpoint, log} = await serve(t, {gateway: answering(streams.chat(['{}'], false))});
	for (const format of ['openai', null, '']) {
		await assert.rejects(askJSON(endpoint, {question: 'q'}, {format}), error => {
			assert.ok(error instanceof TypeError);
			assert.equal(error.message, `format must be one of 'chat', 'responses', 'anthropic', 'gemini', or left out to recognise the API from its answer; got ${JSON.stringify(format)}`);
			return true;
		});
		await assert.rejects(askText(endpoint, {question: 'q'}, {format}), TypeError);
	}

	assert.equal(log.sign.length, 0);
});

test('a tool call\'s arguments are the answer, whatever text came before; a call without any is {}', async t => {
	const preamble = event({type: 'message_start', message: {type: 'message', content: []}})
		+ event({type: 'content_block_delta', index: 0, delta: {type: 'text_delta', text: 'I will look that up.'}})
		+ event({type: 'content_block_start', index: 1, content_block: {type: 'tool_use', id: 'toolu_1', name: 'f', input: {}}});
	const {endpoint} = await serve(t, {
		gateway(request, response, {attempt}) {
			startStream(response);
			const args = attempt === 1 ? event({type: 'content_block_delta', index: 1, delta: {type: 'input_json_delta', partial_json: '{"a": 1}'}}) : '';
			response.end(preamble + args + event({type: 'message_delta', delta: {stop_reason: 'tool_use'}}) + event({type: 'message_stop'}));
		},
	});
	const first = await askRecording(endpoint);
	assert.deepEqual(first.result, {a: 1});
	assert.deepEqual(first.deltas, ['I will look that up.', '{"a": 1}']);
	assert.deepEqual(first.partials, [{a: 1}]);
	assert.deepEqual(await askJSON(endpoint, {question: 'q'}), {});
});

test('askText returns the model\'s text from every API, streamed or whole, and ignores tool calls', async t => {
	const pieces = ['Pan', 'cakes: mix, ', 'then fry. 😀'];
	for (const format of FORMATS) {
		for (const body of [streams[format](pieces, false), wholes[format](pieces.join(''), false)]) {
			const {endpoint} = await serve(t, {gateway: answering(body)});
			const deltas = [];
			assert.equal(await askText(endpoint, {question: 'q'}, {onText: delta => deltas.push(delta)}), 'Pancakes: mix, then fry. 😀', format);
			assert.equal(deltas.join(''), 'Pancakes: mix, then fry. 😀');
		}

		const {endpoint} = await serve(t, {gateway: answering(streams[format](['{"a": 1}'], true))});
		assert.equal(await askText(endpoint, {question: 'q'}, {format}), '', `${format}: a tool call is not text`);
	}
});

test('askText shares askJSON\'s errors: a broken stream, an upstream error', async t => {
	const {endpoint} = await serve(t, {
		gateway(request, response, {attempt}) {
			if (attempt === 1) {
				startStream(response);
				response.end(event(chunk('half')));
			} else {
				response.writeHead(529, {'content-type': 'application/json'});
				response.end(JSON.stringify({type: 'error', error: {type: 'overloaded_error', message: 'Overloaded'}}));
			}
		},
	});
	await assert.rejects(askText(endpoint, {question: 'q'}), StreamError);
	await assert.rejects(askText(endpoint, {question: 'q'}), error => error instanceof UpstreamError && error.status === 529 && /the upstream answered 529 \(overloaded_error\)$/.test(error.message));
});
