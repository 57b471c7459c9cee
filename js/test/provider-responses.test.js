// OpenAI Responses (js/src/providers/responses.js), streamed and whole, text and function calls.
import assert from 'node:assert/strict';
import test from 'node:test';
import {UpstreamError} from '../src/errors.js';
import {responses} from '../src/providers/responses.js';
import {assertReads, JSON_TYPE, read, respond, sse} from './answers.js';

const ANSWER = '{"city": "Zürich", "tags": ["😀 quiet", "a\\"b"], "n": 2}';
const pieces = text => [text.slice(0, 3), text.slice(3, 15), text.slice(15, 16), text.slice(16)];
const response = (status, output = [], extra = {}) => ({id: 'resp_1', object: 'response', created_at: 1_700_000_000, status, model: 'gpt-4.1-mini', output, error: null, incomplete_details: null, ...extra});
const message = text => ({id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{type: 'output_text', text, annotations: []}]});
const functionCall = (id, args) => ({id, type: 'function_call', status: 'completed', call_id: `call_${id}`, name: 'search', arguments: args});

// Each event as the API sends it: its type as the SSE event name and in the data, with a sequence number.
const events = list => sse(list.map((data, index) => [data.type, {...data, sequence_number: index}]));

const textStream = (end = {type: 'response.completed', response: response('completed', [message(ANSWER)], {usage: {input_tokens: 9, output_tokens: 12}})}) => events([
	{type: 'response.created', response: response('in_progress')},
	{type: 'response.in_progress', response: response('in_progress')},
	{type: 'response.output_item.added', output_index: 0, item: {id: 'msg_1', type: 'message', status: 'in_progress', role: 'assistant', content: []}},
	{type: 'response.content_part.added', item_id: 'msg_1', output_index: 0, content_index: 0, part: {type: 'output_text', text: '', annotations: []}},
	...pieces(ANSWER).map(delta => ({type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta, logprobs: []})),
	{type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: ANSWER},
	{type: 'response.content_part.done', item_id: 'msg_1', output_index: 0, content_index: 0, part: {type: 'output_text', text: ANSWER, annotations: []}},
	{type: 'response.output_item.done', output_index: 0, item: message(ANSWER)},
	end,
]);

test('a streamed text answer, ending with response.completed', async () => {
	await assertReads(textStream(), 'responses', {reason: 'completed', text: ANSWER, call: undefined});
});

test('a streamed function call: the first call\'s arguments, a second call\'s ignored', async () => {
	const stream = events([
		{type: 'response.created', response: response('in_progress')},
		{type: 'response.output_item.added', output_index: 0, item: {...functionCall('fc_1', ''), status: 'in_progress'}},
		...pieces(ANSWER).map(delta => ({type: 'response.function_call_arguments.delta', item_id: 'fc_1', output_index: 0, delta})),
		{type: 'response.function_call_arguments.done', item_id: 'fc_1', output_index: 0, arguments: ANSWER},
		{type: 'response.output_item.done', output_index: 0, item: functionCall('fc_1', ANSWER)},
		{type: 'response.output_item.added', output_index: 1, item: {...functionCall('fc_2', ''), status: 'in_progress'}},
		{type: 'response.function_call_arguments.delta', item_id: 'fc_2', output_index: 1, delta: '{"other": true}'},
		{type: 'response.output_item.done', output_index: 1, item: functionCall('fc_2', '{"other": true}')},
		{type: 'response.completed', response: response('completed', [functionCall('fc_1', ANSWER), functionCall('fc_2', '{"other": true}')])},
	]);
	await assertReads(stream, 'responses', {reason: 'completed', text: '', call: ANSWER});
});

test('an answer cut at max_output_tokens ends with response.incomplete and says why', async () => {
	const end = {type: 'response.incomplete', response: response('incomplete', [], {incomplete_details: {reason: 'max_output_tokens'}})};
	assert.equal((await read(respond([textStream(end)]))).reason, 'max_output_tokens');
});

test('response.failed and an error event are UpstreamErrors keeping the API\'s error', async () => {
	const failed = {type: 'response.failed', response: response('failed', [], {error: {code: 'server_error', message: 'The model failed.'}})};
	await assert.rejects(read(respond([textStream(failed)])), error => error instanceof UpstreamError && error.error.code === 'server_error' && /sent an error in the stream$/.test(error.message));
	const errorEvent = {type: 'error', code: 'rate_limit_exceeded', message: 'Slow down.', param: null};
	await assert.rejects(read(respond([textStream(errorEvent)])), error => error instanceof UpstreamError && error.error.message === 'Slow down.');
});

test('a whole answer: output_text parts, or a function call', async () => {
	const body = JSON.stringify(response('completed', [{id: 'rs_1', type: 'reasoning', summary: []}, message(ANSWER.slice(0, 10)), message(ANSWER.slice(10))]));
	await assertReads(body, 'responses', {reason: 'completed', text: ANSWER, call: undefined}, {type: JSON_TYPE});
	const calls = JSON.stringify(response('completed', [functionCall('fc_1', ANSWER), functionCall('fc_2', '{}')]));
	await assertReads(calls, 'responses', {reason: 'completed', text: '', call: ANSWER}, {type: JSON_TYPE});
	const incomplete = JSON.stringify(response('incomplete', [message('{"a": ')], {incomplete_details: {reason: 'max_output_tokens'}}));
	assert.equal((await read(respond([incomplete], {type: JSON_TYPE}))).reason, 'max_output_tokens');
});

test('recognises its own shapes only', () => {
	assert.equal(responses.is({type: 'response.created', response: {}}), true);
	assert.equal(responses.is(response('completed')), true);
	for (const other of [undefined, null, {type: 'message_start'}, {type: 'responses'}, {choices: []}, {candidates: []}]) {
		assert.equal(responses.is(other), false, JSON.stringify(other));
	}
});
