// The incremental JSON parser alone (js/src/json.js).
import assert from 'node:assert/strict';
import test from 'node:test';
import {createJSONParser, JSONParseError, parseJSON} from '../src/json.js';

const documents = [
	'{"title": "Pancakes", "servings": 4, "steps": ["Mix", "Fry\\nflip", "Eat"], "vegan": false, "notes": null}',
	String.raw`{"escapes": "a\nb\"c\\d\/e\u00e9\ud83d\ude00\b\f\r\t", "raw": "héllo wörld ¥ 😀"}`,
	'{"numbers": [0, -0, 1, -12, 3.25, -0.5, 1e3, 1E-2, -2.5e+10, 123456789012, 0.1e1]}',
	'{"nested": {"deeper": {"deepest": [[], [{}], [[1, [2, [3]]]]]}}, "after": true}',
	' \n\t\r[ true , false , null , "" , {} , [ ] ] \n',
	'"just a string"',
	'-12.5e-3',
	'0',
	'true',
	'null',
	'[]',
	'{}',
	'{"a": 1, "a": 2}',
	'{"__proto__": {"polluted": true}, "constructor": 1}',
];

const parse = (...pieces) => {
	const parser = createJSONParser();
	for (const piece of pieces) {
		parser.feed(piece);
	}

	return parser.end();
};

// A partial value may only hold what the final one holds: fewer keys, shorter arrays, string
// prefixes; any number, true, false or null it shows is already final.
const assertPartialOf = (partial, final, where) => {
	if (partial === undefined) {
		return;
	}

	if (typeof partial === 'string') {
		assert.equal(typeof final, 'string', where);
		assert.ok(final.startsWith(partial), `${where}: ${JSON.stringify(partial)} is not a prefix of ${JSON.stringify(final)}`);
	} else if (Array.isArray(partial)) {
		assert.ok(Array.isArray(final), where);
		assert.ok(partial.length <= final.length, where);
		for (const [index, item] of partial.entries()) {
			assertPartialOf(item, final[index], `${where}[${index}]`);
		}
	} else if (partial && typeof partial === 'object') {
		assert.equal(Object.getPrototypeOf(partial), Object.prototype, where);
		for (const key of Object.keys(partial)) {
			assert.ok(Object.hasOwn(final, key), `${where}: unexpected key ${key}`);
			assertPartialOf(partial[key], final[key], `${where}.${key}`);
		}
	} else {
		assert.equal(partial, final, where);
	}
};

for (const document of documents) {
	const expected = JSON.parse(document);

	test(`${document.slice(0, 40)}: whole, at every split point, one character at a time`, () => {
		assert.deepEqual(parse(document), expected);
		for (let at = 0; at <= document.length; at++) {
			assert.deepEqual(parse(document.slice(0, at), document.slice(at)), expected, `split at ${at}`);
		}

		assert.deepEqual(parse(...document), expected);
	});

	// With a repeated key the earlier value shows first (tested below); this check cannot allow that.
	if (document !== '{"a": 1, "a": 2}') {
		test(`${document.slice(0, 40)}: every prefix is a partial of the result`, () => {
			for (let at = 0; at <= document.length; at++) {
				const parser = createJSONParser();
				parser.feed(document.slice(0, at));
				assertPartialOf(parser.value, expected, `prefix ${at}`);
			}
		});
	}
}

test('split into three at every pair of points', () => {
	const document = documents[1];
	const expected = JSON.parse(document);
	for (let first = 0; first <= document.length; first++) {
		for (let second = first; second <= document.length; second++) {
			assert.deepEqual(parse(document.slice(0, first), document.slice(first, second), document.slice(second)), expected);
		}
	}
});

test('a repeated key shows its first value, then the last, as JSON.parse keeps it', () => {
	const parser = createJSONParser();
	parser.feed('{"a": 1, "a": "tw');
	assert.deepEqual(parser.value, {a: 'tw'});
	parser.feed('o"}');
	assert.deepEqual(parser.end(), {a: 'two'});
});

test('__proto__ becomes an own property, as with JSON.parse, not the prototype', () => {
	const value = parse('{"__proto__": {"polluted": true}}');
	assert.equal(Object.getPrototypeOf(value), Object.prototype);
	assert.deepEqual(Object.keys(value), ['__proto__']);
	assert.equal(value.polluted, undefined);
	assert.equal({}.polluted, undefined);
});

test('partial values: strings grow, numbers and literals wait until complete', () => {
	const parser = createJSONParser();
	const steps = [
		['{"na', {}],
		['me": "Ada Lo', {name: 'Ada Lo'}],
		['velace", "born": 18', {name: 'Ada Lovelace'}],
		['15, "ok": tr', {name: 'Ada Lovelace', born: 1815}],
		['ue, "list": ["x', {name: 'Ada Lovelace', born: 1815, ok: true, list: ['x']}],
		['y", -1', {name: 'Ada Lovelace', born: 1815, ok: true, list: ['xy']}],
		[']}', {name: 'Ada Lovelace', born: 1815, ok: true, list: ['xy', -1]}],
	];
	for (const [text, value] of steps) {
		parser.feed(text);
		assert.deepEqual(parser.value, value, `after ${JSON.stringify(text)}`);
	}

	assert.equal(parser.done, true);
});

test('feed() tells whether the value changed', () => {
	const parser = createJSONParser();
	assert.equal(parser.feed('  '), false);
	assert.equal(parser.feed('{'), true);
	assert.equal(parser.feed('"key'), false, 'a key in progress is not shown');
	assert.equal(parser.feed('": 12'), false, 'a number in progress is not shown');
	assert.equal(parser.feed('3, "s": '), true);
	assert.equal(parser.feed('"'), true, 'an opened string shows as ""');
	assert.equal(parser.feed('ab'), true);
	assert.equal(parser.feed('"'), false, 'closing a string adds nothing');
	assert.equal(parser.feed(' }'), false);
	assert.equal(parser.done, true);
	assert.deepEqual(parser.end(), {key: 123, s: 'ab'});
});

test('a top-level number is only complete at end()', () => {
	const parser = createJSONParser();
	parser.feed('12');
	assert.equal(parser.value, undefined);
	assert.equal(parser.done, false);
	parser.feed('3');
	assert.equal(parser.end(), 123);
	assert.equal(parser.done, true);
});

test('invalid JSON throws SyntaxError, like JSON.parse, naming the position', () => {
	const invalid = [
		['{"a" 1}', /position 5/],
		['[1,]', /position 3/],
		['{"a": 1,}', /position 8/],
		['{,}', /position 1/],
		['[1 2]', /position 3/],
		['01', /"01"/],
		['1.', /"1."/],
		['-', /"-"/],
		['1e', /"1e"/],
		['+1', /position 0/],
		['.5', /position 0/],
		['tru', /end of JSON/],
		['nul1', /position 3/],
		['"\u0001"', /position 1/],
		['"\\x"', /position 2/],
		['"\\u12g4"', /position 5/],
		['{} x', /position 3/],
		['{"a": undefined}', /position 6/],
		["{'a': 1}", /position 1/],
		['[', /end of JSON/],
		['{"a": "b', /end of JSON/],
		['', /end of JSON/],
		['   ', /end of JSON/],
		['}', /position 0/],
		['{"a": 1]', /position 7/],
		['[1}', /position 2/],
	];
	for (const [text, message] of invalid) {
		assert.throws(() => JSON.parse(text), SyntaxError, `JSON.parse accepts ${text}`);
		for (let at = 0; at <= text.length; at++) {
			assert.throws(() => parse(text.slice(0, at), text.slice(at)), error => error instanceof SyntaxError && message.test(error.message), `${text} split at ${at}`);
		}
	}
});

test('errors are JSONParseErrors: a SyntaxError with a type and the position in the whole text', () => {
	const cases = [
		[['{"a": [1, ', '2}'], 'unexpected_character', 11, 'Unexpected "}" at position 11 in JSON'],
		[['{"a": 01}'], 'invalid_number', 6, 'Unexpected "01" at position 6 in JSON'],
		[['[1, -]'], 'invalid_number', 4, 'Unexpected "-" at position 4 in JSON'],
		[['{"a": "b'], 'unexpected_end', 8, 'Unexpected end of JSON input'],
		[['["\\', 'q"]'], 'unexpected_character', 3, 'Unexpected "q" at position 3 in JSON'],
	];
	for (const [pieces, type, position, message] of cases) {
		assert.throws(() => parse(...pieces), error => {
			assert.ok(error instanceof JSONParseError);
			assert.ok(error instanceof SyntaxError);
			assert.equal(error.name, 'JSONParseError');
			assert.deepEqual({type: error.type, position: error.position, message: error.message}, {type, position, message});
			return true;
		}, pieces.join(''));
	}
});

test('parseJSON is JSON.parse, or undefined for text that is not JSON', () => {
	assert.deepEqual(parseJSON('{"a": [1]}'), {a: [1]});
	assert.equal(parseJSON('null'), null);
	assert.equal(parseJSON('[DONE]'), undefined);
	assert.equal(parseJSON(''), undefined);
});

test('an error is found as soon as the text cannot be JSON, and sticks', () => {
	const parser = createJSONParser();
	parser.feed('{"a": [1, 2');
	assert.throws(() => parser.feed('}'), SyntaxError);
	assert.throws(() => parser.feed(']}'), /Unexpected "}" at position 11/);
	assert.throws(() => parser.end(), /Unexpected "}" at position 11/);
});

// The parser must look at each character once however the text is split; a parser that re-read
// its buffer on every feed would read about n²/2 characters here. Counting what it reads keeps this
// a check of behaviour rather than of timing.
test('work is linear: 1 MB fed one character at a time is read exactly once', () => {
	const parts = [];
	for (let index = 0, length = 0; length < 1_000_000; index++) {
		parts.push(JSON.stringify({index, text: `line ${index} "quoted" \\ é 😀 `.repeat(5), values: [index * 1.5, -index, true, null], nested: {deep: [{}]}}));
		length += parts.at(-1).length;
	}

	const document = `{"items": [${parts.join(',')}], "long": "${'x'.repeat(200_000)}"}`;
	assert.ok(document.length > 1_000_000);

	// Each piece stands in for a string and counts what the parser reads of it.
	let read = 0;
	let sliced = 0;
	class Counted {
		constructor(text) {
			assert.ok(text.length <= 2);
			this.text = text;
			this.length = text.length;
		}

		get 0() {
			read++;
			return this.text[0];
		}

		get 1() {
			read++;
			return this.text[1];
		}

		slice(start, end) {
			const piece = this.text.slice(start, end);
			sliced += piece.length;
			return piece;
		}
	}

	const parser = createJSONParser();
	for (const char of document) {
		parser.feed(new Counted(char));
	}

	assert.deepEqual(parser.end(), JSON.parse(document));
	assert.equal(read, document.length);
	assert.ok(sliced <= document.length, `sliced ${sliced} characters of ${document.length}`);
});
