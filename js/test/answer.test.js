// Reading an answer (js/src/answer.js) alone: a Response made here, its body cut into chunks at
// every awkward place, without a server or a signature in between.
import assert from 'node:assert/strict';
import test from 'node:test';
import {readAnswer} from '../src/answer.js';
import {StreamError, UpstreamError} from '../src/errors.js';
import {SSEParseError} from '../src/sse.js';

const encoder = new TextEncoder();
const SSE = 'text/event-stream; charset=utf-8';

/**
A Response whose body gives `chunks` (strings or bytes) one read at a time, then ends, or fails
with `failure`, or, with `hang`, never ends.
*/
export const respond = (chunks, {type = SSE, failure, hang} = {}) => {
	const queue = chunks.map(piece => (typeof piece === 'string' ? encoder.encode(piece) : piece));
	let cancelled = false;
	const body = new ReadableStream({
		pull(controller) {
			if (queue.length) {
				controller.enqueue(queue.shift());
			} else if (failure) {
				controller.error(failure);
			} else if (!hang) {
				controller.close();
			}
		},
		cancel() {
			cancelled = true;
		},
	}, {highWaterMark: 0});
	const response = new Response(body, {headers: {'content-type': type}});
	Object.defineProperty(response, 'cancelled', {get: () => cancelled});
	return response;
};

/** Reads `response`, collecting what readAnswer hands out; resolves with the result and the parts. */
export const read = async (response, options = {}) => {
	const parts = [];
	const reason = await readAnswer(response, {where: 'POST https://gw.example/v1/x', ...options}, {
		text: delta => parts.push(['text', delta]),
		call: delta => parts.push(['call', delta]),
	});
	return {reason, parts, text: parts.filter(([kind]) => kind === 'text').map(([, delta]) => delta).join('')};
};

/** Every way of cutting `text` in two, by bytes, so cuts fall inside characters and line ends too. */
export const splits = function * (text) {
	const bytes = encoder.encode(text);
	for (let at = 0; at <= bytes.length; at++) {
		yield [bytes.subarray(0, at), bytes.subarray(at)];
	}
};

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
		assert.deepEqual(await read(respond(pieces, {type: 'application/json'})), {reason: 'length', parts: [['text', '[1, 2]']], text: '[1, 2]'});
	}
});

test('reading stops at the stream\'s last event without waiting for the connection to close', async () => {
	const response = respond([`data: ${chatChunk('{}')}\n\ndata: [DONE]\n\n`], {hang: true});
	assert.equal((await read(response)).text, '{}');
	assert.equal(response.cancelled, true, 'the body is cancelled, so the connection is let go');
});

test('a stream that ends after the stop reason without its last event is complete', async () => {
	assert.deepEqual(await read(respond([`data: ${chatChunk('{}', 'stop')}\n\n`])), {reason: 'stop', parts: [['text', '{}']], text: '{}'});
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
		await assert.rejects(read(respond([body], {type: 'application/json'})), error => {
			assert.ok(error instanceof UpstreamError);
			assert.equal(error.body, body);
			assert.equal(error.message, 'POST https://gw.example/v1/x: the upstream answered 200 with something that is not a model\'s answer');
			return true;
		});
	}
});
