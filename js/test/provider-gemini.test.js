// Google Gemini (js/src/providers/gemini.js): streamGenerateContent?alt=sse and generateContent,
// text and function calls.
import assert from 'node:assert/strict';
import test from 'node:test';
import {UpstreamError} from '../src/errors.js';
import {gemini} from '../src/providers/gemini.js';
import {assertReads, JSON_TYPE, read, respond, sse} from './answers.js';

const ANSWER = '{"city": "Zürich", "tags": ["😀 quiet", "a\\"b"], "n": 2}';
const pieces = text => [text.slice(0, 3), text.slice(3, 15), text.slice(15, 16), text.slice(16)];
const usageMetadata = {promptTokenCount: 20, candidatesTokenCount: 12, totalTokenCount: 32};
const chunk = (parts, finishReason) => ({
	candidates: [{content: {parts, role: 'model'}, ...(finishReason && {finishReason}), index: 0}],
	usageMetadata,
	modelVersion: 'gemini-2.5-flash',
	responseId: 'abc',
});

test('a streamed text answer (CRLF, as the API sends it), ending with finishReason', async () => {
	const stream = sse([...pieces(ANSWER).map(text => chunk([{text}])), chunk([{text: ''}], 'STOP')], '\r\n');
	await assertReads(stream, 'gemini', {reason: 'STOP', text: ANSWER, call: undefined});
});

test('a streamed function call: its args, whole; a second call and thought summaries ignored', async () => {
	const args = JSON.parse(ANSWER);
	const stream = sse([
		chunk([{text: 'Looking for {', thought: true}]),
		chunk([{text: 'Searching. '}]),
		chunk([{functionCall: {name: 'search', args}, thoughtSignature: 'Cq8B'}, {functionCall: {name: 'other', args: {x: 1}}}], 'STOP'),
	], '\r\n');
	await assertReads(stream, 'gemini', {reason: 'STOP', text: 'Searching. ', call: JSON.stringify(args)});
});

test('a function call without args is an empty object', async () => {
	assert.equal((await read(respond([sse([chunk([{functionCall: {name: 'now'}}], 'STOP')])]))).call, '{}');
});

test('an answer cut at MAX_TOKENS says so; a stream without finishReason is incomplete', async () => {
	assert.equal((await read(respond([sse([chunk([{text: '{"a": '}], 'MAX_TOKENS')])]))).reason, 'MAX_TOKENS');
	await assert.rejects(read(respond([sse([chunk([{text: '{"a": '}])])])), {name: 'StreamError', code: 'stream_broken'});
});

test('a blocked prompt ends with its block reason', async () => {
	const blocked = {promptFeedback: {blockReason: 'SAFETY', safetyRatings: []}, usageMetadata};
	assert.deepEqual(await read(respond([sse([blocked])])), {reason: 'SAFETY', text: '', call: undefined, parts: []});
	assert.equal((await read(respond([JSON.stringify(blocked)], {type: JSON_TYPE}))).reason, 'SAFETY');
});

test('an error in the stream is an UpstreamError keeping the API\'s error', async () => {
	const error = {code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE'};
	await assert.rejects(read(respond([sse([chunk([{text: '{"a"'}]), {error}])])), thrown => thrown instanceof UpstreamError && thrown.error.status === 'UNAVAILABLE');
});

test('a whole answer: text parts, or a function call', async () => {
	await assertReads(JSON.stringify(chunk([{text: ANSWER.slice(0, 9)}, {text: ANSWER.slice(9)}], 'STOP')), 'gemini', {reason: 'STOP', text: ANSWER, call: undefined}, {type: JSON_TYPE});
	const body = JSON.stringify(chunk([{functionCall: {name: 'search', args: JSON.parse(ANSWER)}}], 'STOP'));
	await assertReads(body, 'gemini', {reason: 'STOP', text: '', call: JSON.stringify(JSON.parse(ANSWER))}, {type: JSON_TYPE});
});

test('recognises its own shapes only', () => {
	assert.equal(gemini.is(chunk([{text: 'x'}])), true);
	assert.equal(gemini.is({promptFeedback: {blockReason: 'OTHER'}}), true);
	for (const other of [undefined, null, {type: 'message_start'}, {type: 'response.created'}, {choices: []}, {error: {}}]) {
		assert.equal(gemini.is(other), false, JSON.stringify(other));
	}
});
