// Reading an answer (js/src/answer.js) alone: a Response made here, its body cut into chunks at
// every awkward place, without a server or a signature in between. Each API's shapes are tested
// in provider-*.test.js; here, what holds for all of them.
import assert from 'node:assert/strict';
import test from 'node:test';
import {GatewayError, StreamError, UpstreamError} from '../src/errors.js';
import {SSEParseError} from '../src/sse.js';
import {providers} from '../src/providers/index.js';
import {JSON_TYPE, read, respond, splits, streams, wholes} from './answers.js';

const chatChunk = (content, finish = null) => JSON.stringify({
	object: 'chat.completion.chunk',
	choices: [{index: 0, delta: content === undefined ? {} : {content}, finish_reason: finish}],
});

const chatStream = [
	': keep-alive',
	'',
	`data: ${chatChunk('{"city": "Zürich ')}`,
	'',
	`data: ${chatChunk('😀", "n": 1}')}`,
	'',
	`data: ${chatChunk(undefined, 'stop')}`,
	'',
	'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}',
	'',
	'data: [DONE]',
	'',
	'',
].join('\r\n');

test('a streamed answer cut at every byte gives the same text and stop reason', async () => {
	for (const pieces of splits(chatStream)) {
		const {reason, text} = await read(respond(pieces));
		assert.equal(text, '{"city": "Zürich 😀", "n": 1}');
		assert.equal(reason, 'stop');
	}
});

test('an answer that is not streamed is read whole', async () => {
	const body = JSON.stringify({choices: [{index: 0, message: {role: 'assistant', content: '[1, 2]'}, finish_reason: 'length'}]});
	for (const pieces of splits(body)) {
		assert.deepEqual(await read(respond(pieces, {type: JSON_TYPE})), {reason: 'length', text: '[1, 2]', call: undefined, parts: [['text', '[1, 2]']]});
	}
});

test('reading stops at the stream\'s last event without waiting for the connection to close', async () => {
	const response = respond([`data: ${chatChunk('{}')}\n\ndata: [DONE]\n\n`], {hang: true});
	assert.equal((await read(response)).text, '{}');
	assert.equal(response.cancelled, true, 'the body is cancelled, so the connection is let go');
});

test('a stream that ends after the stop reason without its last event is complete', async () => {
	assert.deepEqual(await read(respond([`data: ${chatChunk('{}', 'stop')}\n\n`])), {reason: 'stop', text: '{}', call: undefined, parts: [['text', '{}']]});
});

test('a stream that breaks after the stop reason is complete; before it, a StreamError', async () => {
	const failure = new TypeError('terminated');
	assert.equal((await read(respond([`data: ${chatChunk('{}', 'stop')}\n\n`], {failure}))).reason, 'stop');
	await assert.rejects(read(respond([`data: ${chatChunk('{"a"')}\n\n`], {failure})), error => {
		assert.ok(error instanceof StreamError);
		assert.equal(error.code, 'stream_broken');
		assert.equal(error.cause, failure);
		assert.equal(error.message, 'POST https://gw.example/v1/x: the stream broke before the answer was complete');
		return true;
	});
});

test('a stream that ends before the answer is complete is a StreamError', async () => {
	for (const stream of ['', ': nothing\n\n', `data: ${chatChunk('{"a": 1}')}\n\n`, 'data: [DONE]']) {
		await assert.rejects(read(respond([stream])), {name: 'StreamError', code: 'stream_broken', message: 'POST https://gw.example/v1/x: the stream ended before the answer was complete'}, JSON.stringify(stream));
	}
});

test('an error object in the stream is an UpstreamError that keeps it, whatever came before', async () => {
	const error = {message: 'overloaded', type: 'server_error'};
	for (const stream of [`data: ${JSON.stringify({error})}\n\n`, `data: ${chatChunk('{"a"')}\n\ndata: ${JSON.stringify({error})}\n\n`]) {
		await assert.rejects(read(respond([stream])), thrown => {
			assert.ok(thrown instanceof UpstreamError);
			assert.deepEqual(thrown.error, error);
			assert.equal(thrown.status, 200);
			assert.equal(thrown.message, 'POST https://gw.example/v1/x: the upstream sent an error in the stream');
			return true;
		});
	}
});

test('an event past the SSE buffer is a StreamError sse_buffer_overflow, the parser\'s error its cause', async () => {
	await assert.rejects(read(respond([`data: ${'x'.repeat(2 ** 20)}`])), error => {
		assert.ok(error instanceof StreamError);
		assert.equal(error.code, 'sse_buffer_overflow');
		assert.ok(error.cause instanceof SSEParseError);
		assert.equal(error.message, 'POST https://gw.example/v1/x: an event-stream line or event is longer than 1048576 characters');
		return true;
	});
});

test('a whole answer that no API read here would send is an UpstreamError keeping the body', async () => {
	for (const body of ['<html>captive portal</html>', '{"choices": []}', '{"object": "list", "data": []}', '{"error": {"message": "no"}}']) {
		await assert.rejects(read(respond([body], {type: JSON_TYPE})), error => {
			assert.ok(error instanceof UpstreamError);
			assert.equal(error.body, body);
			assert.equal(error.message, 'POST https://gw.example/v1/x: the upstream answered 200 with something that is not a model\'s answer');
			return true;
		});
	}
});

test('each API\'s answers are recognised by its own provider module and no other', () => {
	for (const format of Object.keys(streams)) {
		const samples = [wholes[format]('{}', false), wholes[format]('{}', true)];
		for (const line of streams[format](['{}'], true).split(/\r?\n/)) {
			if (line.startsWith('data: {')) {
				samples.push(JSON.parse(line.slice(6)));
			}
		}

		for (const sample of samples) {
			const recognising = providers.filter(provider => provider.is(sample)).map(provider => provider.name);
			assert.deepEqual(recognising, [format], JSON.stringify(sample));
		}
	}
});

test('events before the first one an API is recognised by are skipped', async () => {
	const stream = `data: "hello"\n\ndata: [1]\n\ndata: {"object": "unknown"}\n\n${streams.anthropic(['{"a": 1}'], false)}`;
	assert.deepEqual(await read(respond([stream])), {reason: 'end_turn', text: '{"a": 1}', call: undefined, parts: [['text', '{"a": 1}']]});
});

test('a whole answer read as a named API that it is not in is an UpstreamError', async () => {
	for (const format of Object.keys(streams)) {
		for (const body of ['<html>captive portal</html>', 'null', '"text"', '7', '{}', '[]']) {
			await assert.rejects(read(respond([body], {type: JSON_TYPE}), format), error => error instanceof UpstreamError && error.body === body, `${format}: ${body}`);
		}
	}
});

test('stream events that are not JSON objects do not upset any provider', async () => {
	for (const format of Object.keys(streams)) {
		const noise = 'data: null\n\ndata: 7\n\ndata: "text"\n\ndata: [1]\n\ndata: not json\n\n';
		const stream = streams[format](['{"a": 1}'], false).replace(/(\r?\n){2}/, match => match + noise);
		assert.equal((await read(respond([stream]), format)).text, '{"a": 1}', format);
	}
});

test('only strings pass as the model\'s text or a call\'s arguments', async () => {
	const odd = [7, null, {text: 'x'}, ['x'], true];
	const stream = [
		...odd.map(content => `data: ${JSON.stringify({choices: [{index: 0, delta: {content, tool_calls: [{index: 0, function: {arguments: content}}]}}]})}\n\n`),
		`data: ${chatChunk('[1]', 'stop')}\n\n`,
	].join('');
	// A call whose arguments are null is a call without arguments, as with '' (chat reads it so).
	assert.deepEqual(await read(respond([stream])), {reason: 'stop', text: '[1]', call: '', parts: [['call', ''], ['text', '[1]']]});
});

// What signgate serve --revoke-live sends when it ends a stream (python/signgate/gateway/live.py),
// after whatever the upstream had sent, even half an event.
const revokedEvent = '\n\nevent: signgate-error\ndata: {"error": {"code": "revoked", "message": "this signed URL has been revoked (its user); ask the backend for a new one", "request_id": "0123456789abcdef", "scope": "user"}, "status": 401}\n\n';

test('the gateway ending a stream is a GatewayError with its code, however the stream was cut', async () => {
	const half = `data: ${chatChunk('{"a": 1')}`;
	for (const before of ['', `data: ${chatChunk('{"a"')}\n\n`, half.slice(0, 30), `${half}\n`, 'event: message\n']) {
		for (const pieces of splits(before + revokedEvent)) {
			await assert.rejects(read(respond(pieces, {failure: new TypeError('terminated')})), error => {
				assert.ok(error instanceof GatewayError, `${error}`);
				assert.equal(error.code, 'revoked');
				assert.equal(error.status, 401);
				assert.equal(error.error.scope, 'user');
				assert.equal(error.message, 'POST https://gw.example/v1/x: the gateway ended the stream: revoked: this signed URL has been revoked (its user); ask the backend for a new one');
				return true;
			}, JSON.stringify(before));
		}
	}
});

test('an event named signgate-error without the gateway\'s shape still ends the stream as a GatewayError', async () => {
	await assert.rejects(read(respond(['event: signgate-error\ndata: nonsense\n\n'])), {name: 'GatewayError', code: 'stream_broken', status: 200});
});
