// Anthropic Messages (js/src/providers/anthropic.js), streamed and whole, text and tool use.
import assert from 'node:assert/strict';
import test from 'node:test';
import {UpstreamError} from '../src/errors.js';
import {anthropic} from '../src/providers/anthropic.js';
import {assertReads, JSON_TYPE, read, respond, sse} from './answers.js';

const ANSWER = '{"city": "Zürich", "tags": ["😀 quiet", "a\\"b"], "n": 2}';
const pieces = text => [text.slice(0, 3), text.slice(3, 15), text.slice(15, 16), text.slice(16)];
const message = {id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, stop_sequence: null, usage: {input_tokens: 25, output_tokens: 1}};

// Each event as the API sends it: its type as the SSE event name and in the data.
const events = list => sse(list.map(data => [data.type, data]));
const delta = (index, value) => ({type: 'content_block_delta', index, delta: value});

test('a streamed text answer, with pings, ending with message_stop', async () => {
	const stream = events([
		{type: 'message_start', message},
		{type: 'content_block_start', index: 0, content_block: {type: 'text', text: ''}},
		{type: 'ping'},
		...pieces(ANSWER).map(text => delta(0, {type: 'text_delta', text})),
		{type: 'content_block_stop', index: 0},
		{type: 'message_delta', delta: {stop_reason: 'end_turn', stop_sequence: null}, usage: {output_tokens: 15}},
		{type: 'message_stop'},
	]);
	await assertReads(stream, 'anthropic', {reason: 'end_turn', text: ANSWER, call: undefined});
});

test('a streamed tool use after some text: the first tool\'s input, the text apart', async () => {
	const stream = events([
		{type: 'message_start', message},
		{type: 'content_block_start', index: 0, content_block: {type: 'thinking', thinking: ''}},
		delta(0, {type: 'thinking_delta', thinking: 'The user wants {'}),
		delta(0, {type: 'signature_delta', signature: 'EqQBCgIYAhIM'}),
		{type: 'content_block_stop', index: 0},
		{type: 'content_block_start', index: 1, content_block: {type: 'text', text: ''}},
		delta(1, {type: 'text_delta', text: 'Let me search.'}),
		{type: 'content_block_stop', index: 1},
		{type: 'content_block_start', index: 2, content_block: {type: 'tool_use', id: 'toolu_1', name: 'search', input: {}}},
		delta(2, {type: 'input_json_delta', partial_json: ''}),
		...pieces(ANSWER).map(partial_json => delta(2, {type: 'input_json_delta', partial_json})),
		{type: 'content_block_stop', index: 2},
		{type: 'content_block_start', index: 3, content_block: {type: 'tool_use', id: 'toolu_2', name: 'other', input: {}}},
		delta(3, {type: 'input_json_delta', partial_json: '{"other": true}'}),
		{type: 'content_block_stop', index: 3},
		{type: 'message_delta', delta: {stop_reason: 'tool_use', stop_sequence: null}, usage: {output_tokens: 40}},
		{type: 'message_stop'},
	]);
	await assertReads(stream, 'anthropic', {reason: 'tool_use', text: 'Let me search.', call: ANSWER});
});

test('a tool use without input streams no JSON: its call is opened, empty', async () => {
	const stream = events([
		{type: 'message_start', message},
		{type: 'content_block_start', index: 0, content_block: {type: 'tool_use', id: 'toolu_1', name: 'now', input: {}}},
		{type: 'content_block_stop', index: 0},
		{type: 'message_delta', delta: {stop_reason: 'tool_use'}},
		{type: 'message_stop'},
	]);
	assert.deepEqual((await read(respond([stream]))).call, '');
});

test('an answer cut at max_tokens says so', async () => {
	const stream = events([
		{type: 'message_start', message},
		{type: 'content_block_start', index: 0, content_block: {type: 'text', text: ''}},
		delta(0, {type: 'text_delta', text: '{"a": [1, '}),
		{type: 'content_block_stop', index: 0},
		{type: 'message_delta', delta: {stop_reason: 'max_tokens'}},
		{type: 'message_stop'},
	]);
	assert.equal((await read(respond([stream]))).reason, 'max_tokens');
});

test('an error event is an UpstreamError keeping the API\'s error', async () => {
	const stream = events([
		{type: 'message_start', message},
		{type: 'content_block_start', index: 0, content_block: {type: 'text', text: ''}},
		delta(0, {type: 'text_delta', text: '{"a"'}),
		{type: 'error', error: {type: 'overloaded_error', message: 'Overloaded'}},
	]);
	await assert.rejects(read(respond([stream])), error => error instanceof UpstreamError && error.error.type === 'overloaded_error');
});

test('a whole answer: text blocks, or a tool use', async () => {
	const whole = (content, stop) => JSON.stringify({...message, content, stop_reason: stop});
	await assertReads(whole([{type: 'text', text: ANSWER.slice(0, 9)}, {type: 'text', text: ANSWER.slice(9)}], 'end_turn'), 'anthropic', {reason: 'end_turn', text: ANSWER, call: undefined}, {type: JSON_TYPE});
	const tools = [{type: 'text', text: 'Searching.'}, {type: 'tool_use', id: 'toolu_1', name: 'search', input: JSON.parse(ANSWER)}, {type: 'tool_use', id: 'toolu_2', name: 'x', input: {}}];
	await assertReads(whole(tools, 'tool_use'), 'anthropic', {reason: 'tool_use', text: 'Searching.', call: JSON.stringify(JSON.parse(ANSWER))}, {type: JSON_TYPE});
});

test('recognises its own shapes only', () => {
	for (const own of [{type: 'message_start', message}, {type: 'content_block_delta'}, {type: 'ping'}, {...message, content: []}]) {
		assert.equal(anthropic.is(own), true, JSON.stringify(own));
	}

	for (const other of [undefined, null, {type: 'response.created'}, {choices: []}, {candidates: []}, {type: 'error', error: {}}]) {
		assert.equal(anthropic.is(other), false, JSON.stringify(other));
	}
});
