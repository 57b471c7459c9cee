// Server-sent events (the WHATWG EventSource rules), push style: feed() chunks as they come.

/** A stream the parser cannot read; `type` says why (only `buffer_overflow` today). */
export class SSEParseError extends Error {
	name = 'SSEParseError';

	constructor(message, type) {
		super(message);
		this.type = type;
	}
}

export const createSSEParser = ({onEvent, onComment, maxBufferSize = 2 ** 20}) => {
	let decoder, pending, data, event, id, skipLF;
	const reset = () => {
		decoder = new TextDecoder();
		pending = '';
		data = event = undefined;
		skipLF = false;
	};

	const checkSize = size => {
		if (size > maxBufferSize) {
			reset();
			throw new SSEParseError(`an event-stream line or event is longer than ${maxBufferSize} characters`, 'buffer_overflow');
		}
	};

	// A blank line ends the event; an event without data is dropped, as EventSource does.
	const dispatchEvent = () => {
		if (data !== undefined) {
			const payload = {data, event, id};
			data = event = undefined;
			onEvent(payload);
		}

		event = undefined;
	};

	const processField = (field, value) => {
		if (field === 'data') {
			data = data === undefined ? value : data + '\n' + value;
			checkSize(data.length);
		} else if (field === 'event') {
			event = value;
		} else if (field === 'id' && !value.includes('\0')) {
			id = value;
		}
		// `retry` and unknown fields are ignored: nothing here reconnects.
	};

	const parseLine = line => {
		if (!line) {
			return dispatchEvent();
		}

		if (line[0] === ':') {
			return onComment?.(line.slice(line[1] === ' ' ? 2 : 1));
		}

		const colon = line.indexOf(':');
		const value = colon < 0 ? '' : line.slice(colon + 1);
		processField(colon < 0 ? line : line.slice(0, colon), value[0] === ' ' ? value.slice(1) : value);
	};

	// Only the new text is searched for line ends, so a long line fed in many chunks stays linear.
	const processLines = text => {
		// A regular expression per call: onEvent may feed another parser before this loop goes on.
		const lineEnd = /\r\n?|\n/g;
		let start = 0;
		for (let match; (match = lineEnd.exec(text));) {
			const line = pending + text.slice(start, match.index);
			pending = '';
			start = lineEnd.lastIndex;
			parseLine(line);
		}

		pending += text.slice(start);
		checkSize(pending.length);
	};

	reset();
	return {
		feed(chunk) {
			let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, {stream: true});
			if (text) {
				// A CRLF split across two chunks: the CR already ended the line.
				if (skipLF && text[0] === '\n') {
					text = text.slice(1);
				}

				skipLF = text.at(-1) === '\r';
			}

			processLines(text);
		},
		reset,
	};
};
