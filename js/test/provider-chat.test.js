// OpenAI Chat Completions (js/src/providers/chat.js), streamed and whole, text and tool calls.
import assert from 'node:assert/strict';
import test from 'node:test';
import {chat} from '../src/providers/chat.js';
import {assertReads, JSON_TYPE, read, respond, sse} from './answers.js';

const ANSWER = '{"city": "Zürich", "tags": ["😀 quiet", "a\\"b"], "n": 2}';
const base = {id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini'};
const chunk = (delta, finish = null) => ({...base, choices: [{index: 0, delta, logprobs: null, finish_reason: finish}]});
const pieces = text => [text.slice(0, 3), text.slice(3, 15), text.slice(15, 16), text.slice(16)];

test('a streamed text answer, with a usage chunk after the stop reason', async () => {
	const stream = sse([
		chunk({role: 'assistant', content: '', refusal: null}),
		...pieces(ANSWER).map(content => chunk({content})),
		chunk({}, 'stop'),
		{...base, choices: [], usage: {prompt_tokens: 20, completion_tokens: 12, total_tokens: 32}},
		'[DONE]',
	]);
	await assertReads(stream, 'chat', {reason: 'stop', text: ANSWER, call: undefined});
});

test('a streamed tool call: the first call\'s arguments, a parallel call\'s ignored', async () => {
	const call = (index, fields) => ({tool_calls: [{index, ...fields}]});
	const stream = sse([
		chunk({role: 'assistant', content: null, ...call(0, {id: 'call_1', type: 'function', function: {name: 'search', arguments: ''}})}),
		...pieces(ANSWER).map(text => chunk(call(0, {function: {arguments: text}}))),
		chunk(call(1, {id: 'call_2', type: 'function', function: {name: 'other', arguments: '{"x": 1}'}})),
		chunk({}, 'tool_calls'),
		'[DONE]',
	]);
	await assertReads(stream, 'chat', {reason: 'tool_calls', text: '', call: ANSWER});
});

test('a whole answer: text, or a tool call', async () => {
	const completion = message => JSON.stringify({id: 'chatcmpl-1', object: 'chat.completion', choices: [{index: 0, message: {role: 'assistant', ...message}, finish_reason: message.tool_calls ? 'tool_calls' : 'length'}], usage: {prompt_tokens: 1, completion_tokens: 2}});
	await assertReads(completion({content: ANSWER}), 'chat', {reason: 'length', text: ANSWER, call: undefined}, {type: JSON_TYPE});
	const calls = [{id: 'call_1', type: 'function', function: {name: 'search', arguments: ANSWER}}, {id: 'call_2', type: 'function', function: {name: 'x', arguments: '{}'}}];
	await assertReads(completion({content: null, tool_calls: calls}), 'chat', {reason: 'tool_calls', text: '', call: ANSWER}, {type: JSON_TYPE});
});

test('with n > 1, only the first choice is read', async () => {
	const stream = sse([
		{...base, choices: [{index: 1, delta: {content: 'second'}, finish_reason: null}]},
		chunk({content: '[1]'}),
		{...base, choices: [{index: 1, delta: {}, finish_reason: 'length'}]},
		chunk({}, 'stop'),
		'[DONE]',
	]);
	assert.deepEqual((await read(respond([stream]))).text, '[1]');
});

test('recognises its own shapes only', () => {
	assert.equal(chat.is(chunk({content: 'x'})), true);
	assert.equal(chat.is({object: 'chat.completion', choices: []}), true);
	for (const other of [undefined, null, '[DONE]', {type: 'message_start'}, {type: 'response.created'}, {candidates: []}, {error: {}}]) {
		assert.equal(chat.is(other), false, JSON.stringify(other));
	}
});
