// Helpers for tests that read answers without a server: a Response made here, its body cut into
// chunks at every awkward place, and what readAnswer (js/src/answer.js) hands out of it.
import assert from 'node:assert/strict';
import {readAnswer} from '../src/answer.js';
import {providers} from '../src/providers/index.js';

const encoder = new TextEncoder();
export const SSE = 'text/event-stream; charset=utf-8';
export const JSON_TYPE = 'application/json';

/**
A Response whose body gives `chunks` (strings or bytes) one read at a time, then ends, or fails
with `failure`, or, with `hang`, never ends. `response.cancelled` tells whether it was cancelled.
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

/**
Reads `response` as `format` (a provider's name), or recognising the API when it is undefined.
Resolves with the stop reason, the model's text, and the first tool call's arguments (undefined
when it made none), each joined from its pieces, and the pieces in order.
*/
export const read = async (response, format) => {
	const parts = [];
	const provider = providers.find(candidate => candidate.name === format);
	assert.equal(Boolean(provider), format !== undefined, `no provider ${format}`);
	const reason = await readAnswer(response, {where: 'POST https://gw.example/v1/x', provider}, {
		text: delta => parts.push(['text', delta]),
		call: delta => parts.push(['call', delta]),
	});
	const joined = kind => parts.some(([each]) => each === kind) ? parts.filter(([each]) => each === kind).map(([, delta]) => delta).join('') : undefined;
	return {reason, text: joined('text') ?? '', call: joined('call'), parts};
};

/** Every way of cutting `text` in two, by bytes, so that cuts fall inside characters and line ends. */
export const splits = function * (text) {
	const bytes = encoder.encode(text);
	for (let at = 0; at <= bytes.length; at++) {
		yield [bytes.subarray(0, at), bytes.subarray(at)];
	}
};

/** An event stream from events, each `[name, data]` or just data; objects become JSON. */
export const sse = (events, lineEnd = '\n') => events.map(event => {
	const [name, data] = Array.isArray(event) ? event : [undefined, event];
	const text = typeof data === 'string' ? data : JSON.stringify(data);
	return (name ? `event: ${name}${lineEnd}` : '') + `data: ${text}${lineEnd}${lineEnd}`;
}).join('');

/**
Checks that `body` reads as `expected` ({reason, text, call}) whole, cut in two at every byte, and
in pieces of 1 to 7 bytes; recognised from the answer and with its format named.
*/
export const assertReads = async (body, format, expected, {type = SSE} = {}) => {
	const summary = ({reason, text, call}) => ({reason, text, call});
	assert.deepEqual(summary(await read(respond([body], {type}))), expected, 'recognised from the answer');
	assert.deepEqual(summary(await read(respond([body], {type}), format)), expected, `read as ${format}`);
	for (const pieces of splits(body)) {
		assert.deepEqual(summary(await read(respond(pieces, {type}))), expected, `cut at byte ${pieces[0].length}`);
	}

	const bytes = encoder.encode(body);
	const small = [];
	for (let at = 0, size = 1; at < bytes.length; at += size, size = (size % 7) + 1) {
		small.push(bytes.subarray(at, at + size));
	}

	assert.deepEqual(summary(await read(respond(small, {type}))), expected, 'in pieces of 1 to 7 bytes');
};

/**
A streamed answer in each API's shape, the model's output given in `pieces`: as its text, or with
`call`, as a tool call's arguments (Gemini sends those whole, parsed, in one part).
*/
export const streams = {
	chat: (pieces, call) => sse([
		...pieces.map(text => ({choices: [{index: 0, delta: call ? {tool_calls: [{index: 0, function: {arguments: text}}]} : {content: text}, finish_reason: null}]})),
		{choices: [{index: 0, delta: {}, finish_reason: call ? 'tool_calls' : 'stop'}]},
		'[DONE]',
	]),
	responses: (pieces, call) => sse([
		{type: 'response.created', response: {object: 'response', status: 'in_progress', output: []}},
		...(call ? [{type: 'response.output_item.added', output_index: 0, item: {id: 'fc_1', type: 'function_call', name: 'f', arguments: ''}}] : []),
		...pieces.map(delta => (call ? {type: 'response.function_call_arguments.delta', item_id: 'fc_1', delta} : {type: 'response.output_text.delta', item_id: 'msg_1', delta})),
		{type: 'response.completed', response: {object: 'response', status: 'completed', output: []}},
	].map(data => [data.type, data])),
	anthropic: (pieces, call) => sse([
		{type: 'message_start', message: {type: 'message', content: []}},
		{type: 'content_block_start', index: 0, content_block: call ? {type: 'tool_use', id: 'toolu_1', name: 'f', input: {}} : {type: 'text', text: ''}},
		...pieces.map(text => ({type: 'content_block_delta', index: 0, delta: call ? {type: 'input_json_delta', partial_json: text} : {type: 'text_delta', text}})),
		{type: 'content_block_stop', index: 0},
		{type: 'message_delta', delta: {stop_reason: call ? 'tool_use' : 'end_turn'}},
		{type: 'message_stop'},
	].map(data => [data.type, data])),
	gemini: (pieces, call) => sse([
		...(call ? [[{functionCall: {name: 'f', args: JSON.parse(pieces.join(''))}}]] : pieces.map(text => [{text}])).map(parts => ({candidates: [{content: {parts, role: 'model'}, index: 0}]})),
		{candidates: [{content: {parts: [{text: ''}], role: 'model'}, finishReason: 'STOP', index: 0}]},
	], '\r\n'),
};

/** A whole (not streamed) answer in each API's shape: `text` as the model's text, or with `call`, as a tool call's arguments. */
export const wholes = {
	chat: (text, call) => ({choices: [{index: 0, message: call ? {role: 'assistant', content: null, tool_calls: [{id: 'c', type: 'function', function: {name: 'f', arguments: text}}]} : {role: 'assistant', content: text}, finish_reason: 'stop'}]}),
	responses: (text, call) => ({object: 'response', status: 'completed', output: [call ? {type: 'function_call', name: 'f', arguments: text} : {type: 'message', role: 'assistant', content: [{type: 'output_text', text}]}]}),
	anthropic: (text, call) => ({type: 'message', role: 'assistant', content: [call ? {type: 'tool_use', id: 't', name: 'f', input: JSON.parse(text)} : {type: 'text', text}], stop_reason: 'end_turn'}),
	gemini: (text, call) => ({candidates: [{content: {parts: [call ? {functionCall: {name: 'f', args: JSON.parse(text)}} : {text}], role: 'model'}, finishReason: 'STOP', index: 0}]}),
};
