// The event-stream parser alone (js/src/sse.js), fed the way networks and proxies split streams.
import assert from 'node:assert/strict';
import test from 'node:test';
import {createSSEParser, SSEParseError} from '../src/sse.js';

const encoder = new TextEncoder();

const chunk = (content, finish = null) => JSON.stringify({
	id: 'chatcmpl-1',
	object: 'chat.completion.chunk',
	model: 'gpt-4o-mini',
	choices: [{index: 0, delta: content === undefined ? {} : {content}, finish_reason: finish}],
});

// Streams as OpenAI-compatible servers send them, with the quirks the spec allows.
const openai = [
	`data: ${chunk('{"greeting": "h')}`,
	'',
	`data: ${chunk('éllo wörld ¥ 😀"}')}`,
	'',
	`data: ${chunk(undefined, 'stop')}`,
	'',
	'data: [DONE]',
	'',
	'',
].join('\n');

const recorded = {
	'OpenAI, LF': openai,
	'OpenAI, CRLF': openai.replaceAll('\n', '\r\n'),
	'OpenAI, CR': openai.replaceAll('\n', '\r'),
	'comments, fields, multi-line data, mixed line ends': [
		': keep-alive',
		':no space',
		'event: completion\r',
		'id: 41',
		'data: first line\r\ndata:second line\ndata:  two spaces',
		'',
		'retry: 1000',
		'event: ignored because no data follows',
		'',
		'data',
		'',
		'id: 42\0',
		'data: {"text": "¥ 😀 ünïcödé"}',
		'unknown: field',
		'',
		'data: unfinished event is dropped',
	].join('\n'),
};

const expected = {
	'OpenAI, LF': {
		events: [
			{data: chunk('{"greeting": "h'), event: undefined, id: undefined},
			{data: chunk('éllo wörld ¥ 😀"}'), event: undefined, id: undefined},
			{data: chunk(undefined, 'stop'), event: undefined, id: undefined},
			{data: '[DONE]', event: undefined, id: undefined},
		],
		comments: [],
	},
	'comments, fields, multi-line data, mixed line ends': {
		events: [
			{data: 'first line\nsecond line\n two spaces', event: 'completion', id: '41'},
			{data: '', event: undefined, id: '41'},
			{data: '{"text": "¥ 😀 ünïcödé"}', event: undefined, id: '41'},
		],
		comments: ['keep-alive', 'no space'],
	},
};
expected['OpenAI, CRLF'] = expected['OpenAI, LF'];
expected['OpenAI, CR'] = expected['OpenAI, LF'];

const collect = (chunks, options) => {
	const events = [];
	const comments = [];
	const parser = createSSEParser({onEvent: event => events.push(event), onComment: comment => comments.push(comment), ...options});
	for (const piece of chunks) {
		parser.feed(piece);
	}

	return {events, comments};
};

for (const [name, stream] of Object.entries(recorded)) {
	test(`${name}: parsed whole`, () => {
		assert.deepEqual(collect([stream]), expected[name]);
	});

	test(`${name}: split at every character, as text`, () => {
		for (let at = 0; at <= stream.length; at++) {
			assert.deepEqual(collect([stream.slice(0, at), stream.slice(at)]), expected[name], `split at ${at}`);
		}
	});

	test(`${name}: split at every byte, including inside UTF-8 characters`, () => {
		const bytes = encoder.encode(stream);
		assert.ok(bytes.length > stream.length, 'the stream holds multi-byte characters');
		for (let at = 0; at <= bytes.length; at++) {
			assert.deepEqual(collect([bytes.subarray(0, at), bytes.subarray(at)]), expected[name], `split at byte ${at}`);
		}
	});

	test(`${name}: split into three at many byte pairs`, () => {
		const bytes = encoder.encode(stream);
		for (let first = 0; first <= bytes.length; first += 7) {
			for (let second = first; second <= bytes.length; second += 5) {
				const pieces = [bytes.subarray(0, first), bytes.subarray(first, second), bytes.subarray(second)];
				assert.deepEqual(collect(pieces), expected[name], `split at bytes ${first} and ${second}`);
			}
		}
	});

	test(`${name}: one byte at a time`, () => {
		const bytes = encoder.encode(stream);
		assert.deepEqual(collect(Array.from(bytes, (_, index) => bytes.subarray(index, index + 1))), expected[name]);
	});
}

test('a CRLF split between two chunks ends one line, not two', () => {
	const {events} = collect(['data: a\r', '\ndata: b\r', '', '\n\r\n']);
	assert.deepEqual(events, [{data: 'a\nb', event: undefined, id: undefined}]);
});

test('a line of spaces is a field with an odd name, not the blank line that ends an event', () => {
	const {events} = collect(['data: a\n \ndata: b\n\n']);
	assert.deepEqual(events, [{data: 'a\nb', event: undefined, id: undefined}]);
});

test('a lone CR followed by a non-LF chunk ends the line', () => {
	const {events} = collect(['data: a\r', 'data: b\r\r']);
	assert.deepEqual(events, [{data: 'a\nb', event: undefined, id: undefined}]);
});

test('a byte-order mark at the start is skipped', () => {
	const {events} = collect([new Uint8Array([0xEF, 0xBB]), encoder.encode('\uFEFF').subarray(2), encoder.encode('data: x\n\n')]);
	assert.deepEqual(events, [{data: 'x', event: undefined, id: undefined}]);
});

test('invalid UTF-8 becomes U+FFFD instead of failing', () => {
	const {events} = collect([new Uint8Array([...encoder.encode('data: a'), 0xFF, ...encoder.encode('b\n\n')])]);
	assert.deepEqual(events, [{data: 'a\uFFFDb', event: undefined, id: undefined}]);
});

test('reset() drops an unfinished line and event', () => {
	const events = [];
	const parser = createSSEParser({onEvent: event => events.push(event)});
	parser.feed('data: one\ndata: half');
	parser.reset();
	parser.feed('data: two\n\n');
	assert.deepEqual(events, [{data: 'two', event: undefined, id: undefined}]);
});

test('comments are ignored without onComment', () => {
	assert.deepEqual(collect([': ping\n\ndata: x\n\n'], {onComment: undefined}).events, [{data: 'x', event: undefined, id: undefined}]);
});

test('a line longer than maxBufferSize is an SSEParseError buffer_overflow, and the parser can go on', () => {
	const events = [];
	const parser = createSSEParser({onEvent: event => events.push(event), maxBufferSize: 64});
	parser.feed('data: ' + 'x'.repeat(50));
	assert.throws(() => parser.feed('y'.repeat(20)), error => {
		assert.ok(error instanceof SSEParseError);
		assert.equal(error.name, 'SSEParseError');
		assert.equal(error.type, 'buffer_overflow');
		assert.equal(error.message, 'an event-stream line or event is longer than 64 characters');
		return true;
	});
	parser.feed('data: fine\n\n');
	assert.deepEqual(events, [{data: 'fine', event: undefined, id: undefined}]);
});

test('an event whose data lines add up past maxBufferSize fails too', () => {
	const parser = createSSEParser({onEvent() {}, maxBufferSize: 64});
	assert.throws(() => parser.feed('data: 0123456789012345678901234567890\n'.repeat(3)), {type: 'buffer_overflow'});
});

test('a line exactly at maxBufferSize is fine', () => {
	const line = 'data: ' + 'x'.repeat(58);
	assert.equal(line.length, 64);
	assert.deepEqual(collect([line, '\n\n'], {maxBufferSize: 64}).events, [{data: 'x'.repeat(58), event: undefined, id: undefined}]);
});

test('the default buffer takes a 1 MiB line and refuses a longer one', () => {
	const parser = createSSEParser({onEvent() {}});
	parser.feed('data: ' + 'x'.repeat((2 ** 20) - 6));
	assert.throws(() => parser.feed('x'), {type: 'buffer_overflow'});
});

test('an event handler may feed another parser without upsetting this one', () => {
	const inner = [];
	const outer = [];
	const nested = createSSEParser({onEvent: event => inner.push(event.data)});
	const parser = createSSEParser({
		onEvent(event) {
			outer.push(event.data);
			nested.feed('data: inner\n\ndata: more\n\n');
		},
	});
	parser.feed('data: a\n\ndata: b\n\n');
	assert.deepEqual(outer, ['a', 'b']);
	assert.deepEqual(inner, ['inner', 'more', 'inner', 'more']);
});
