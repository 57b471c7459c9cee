// Incremental JSON: every character is looked at once, whatever the chunking, and the value so far
// is kept up to date in place.

/** JSON.parse, or undefined when the text is not JSON. */
export const parseJSON = text => {
	try {
		return JSON.parse(text);
	} catch {}
};

/**
JSON the parser cannot accept. A SyntaxError, as JSON.parse throws; `type` is `unexpected_character`,
`invalid_number` or `unexpected_end`, and `position` the offset in the whole text fed so far.
*/
export class JSONParseError extends SyntaxError {
	name = 'JSONParseError';

	constructor(message, type, position) {
		super(message);
		this.type = type;
		this.position = position;
	}
}

const WHITESPACE = ' \t\n\r';
const ESCAPES = {'"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t'};
const LITERALS = {t: 'true', f: 'false', n: 'null'};
const NUMBER_SYNTAX = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

export const createJSONParser = () => {
	const stack = [];
	let root;
	let key;
	// What comes next: 'value' (any value), 'value_or_end' (a value or ']', just after '['),
	// 'after_value' (',' or the open container's end), 'key_or_end' (a key or '}', just after '{'),
	// 'key' (after ','), 'colon', 'string' (a key's or a value's characters), 'escape' (after '\'),
	// 'unicode' (the four hex digits of '\u'), 'number', 'literal' (the rest of true, false or
	// null), 'done'. Strings rather than numbers: they read as themselves, minified too.
	let state = 'value';
	let token = '';
	let isKey;
	let shown = 0;
	let hex;
	let changed;
	let offset = 0;
	let position = 0;
	let failure;

	const fail = (text, at, type = 'unexpected_character') => {
		throw new JSONParseError(text ? `Unexpected ${JSON.stringify(text)} at position ${at} in JSON` : 'Unexpected end of JSON input', text ? type : 'unexpected_end', at);
	};

	// Adds a value to the open container, or replaces the last one (a string that grew).
	const put = (value, replace) => {
		const top = stack.at(-1);
		if (!top) {
			root = value;
		} else if (Array.isArray(top)) {
			top[replace ? top.length - 1 : top.length] = value;
		} else if (key === '__proto__') {
			// An own property, as JSON.parse makes it, not the object's prototype.
			Object.defineProperty(top, key, {value, writable: true, enumerable: true, configurable: true});
		} else {
			top[key] = value;
		}

		changed = true;
	};

	const afterValue = () => {
		state = stack.length ? 'after_value' : 'done';
	};

	const open = value => {
		put(value);
		stack.push(value);
	};

	const endNumber = () => {
		if (!NUMBER_SYNTAX.test(token)) {
			fail(token, offset, 'invalid_number');
		}

		put(Number(token));
		afterValue();
	};

	const startString = asKey => {
		isKey = asKey;
		state = 'string';
		token = '';
		shown = 0;
	};

	// One character outside a string.
	const step = (char, at) => {
		if (state === 'number') {
			if ('0123456789+-.eE'.includes(char)) {
				token += char;
				return;
			}

			endNumber();
		}

		if (state === 'literal') {
			if (char !== token[shown]) {
				fail(char, at);
			}

			if (++shown === token.length) {
				put(JSON.parse(token));
				afterValue();
			}

			return;
		}

		if (WHITESPACE.includes(char)) {
			return;
		}

		if (state === 'value_or_end') {
			if (char === ']') {
				stack.pop();
				return afterValue();
			}

			state = 'value';
		}

		if (state === 'value') {
			if (char === '{') {
				open({});
				state = 'key_or_end';
			} else if (char === '[') {
				open([]);
				state = 'value_or_end';
			} else if (char === '"') {
				put('');
				startString(false);
			} else if (char === '-' || (char >= '0' && char <= '9')) {
				token = char;
				offset = at;
				state = 'number';
			} else if (LITERALS[char]) {
				token = LITERALS[char];
				shown = 1;
				state = 'literal';
			} else {
				fail(char, at);
			}
		} else if (state === 'after_value' && char === ',') {
			state = Array.isArray(stack.at(-1)) ? 'value' : 'key';
		} else if (state === 'after_value' || state === 'key_or_end') {
			if (char === (Array.isArray(stack.at(-1)) ? ']' : '}')) {
				stack.pop();
				afterValue();
			} else if (state === 'key_or_end' && char === '"') {
				startString(true);
			} else {
				fail(char, at);
			}
		} else if (state === 'key' && char === '"') {
			startString(true);
		} else if (state === 'colon' && char === ':') {
			state = 'value';
		} else {
			fail(char, at);
		}
	};

	// Reads `text` from `index` up to the string's end or the text's; returns where it stopped.
	// Plain characters are taken a run at a time, with one slice.
	const readString = (text, index) => {
		const run = index;
		for (; index < text.length; index++) {
			const char = text[index];
			if (char === '"' || char === '\\' || char < ' ') {
				token += text.slice(run, index);
				if (char === '\\') {
					state = 'escape';
				} else if (char === '"') {
					if (isKey) {
						key = token;
						state = 'colon';
					} else {
						if (token.length !== shown) {
							put(token, true);
						}

						afterValue();
					}
				} else {
					fail(char, position + index);
				}

				return index;
			}
		}

		token += text.slice(run);
		return index;
	};

	const readEscape = (char, at) => {
		if (state === 'escape') {
			if (char === 'u') {
				hex = '';
				state = 'unicode';
			} else if (ESCAPES[char]) {
				token += ESCAPES[char];
				state = 'string';
			} else {
				fail(char, at);
			}
		} else {
			if (!/[\da-fA-F]/.test(char)) {
				fail(char, at);
			}

			hex += char;
			if (hex.length === 4) {
				token += String.fromCharCode(Number.parseInt(hex, 16));
				state = 'string';
			}
		}
	};

	const parser = {
		get value() {
			return root;
		},
		get done() {
			return state === 'done';
		},
		feed(text) {
			if (failure) {
				throw failure;
			}

			changed = false;
			try {
				for (let index = 0; index < text.length; index++) {
					if (state === 'string') {
						index = readString(text, index);
					} else if (state === 'escape' || state === 'unicode') {
						readEscape(text[index], position + index);
					} else {
						step(text[index], position + index);
					}
				}

				// A string value in progress is shown as far as it has come (keys are not).
				if ((state === 'string' || state === 'escape' || state === 'unicode') && !isKey && token.length !== shown) {
					put(token, true);
					shown = token.length;
				}

				position += text.length;
				return changed;
			} catch (error) {
				throw (failure = error);
			}
		},
		end() {
			if (state === 'number' && !stack.length) {
				parser.feed(' ');
			}

			if (failure) {
				throw failure;
			}

			if (state !== 'done') {
				fail('', position);
			}

			return root;
		},
	};
	return parser;
};
