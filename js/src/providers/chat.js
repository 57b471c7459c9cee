// OpenAI Chat Completions, and every server that copies it: `choices[0].delta.content` streamed,
// `choices[0].message` whole; `[DONE]` ends a stream.

const take = (choice, out) => {
	const message = choice.delta ?? choice.message;
	if (message?.content) {
		out.text(message.content);
	}

	if (choice.finish_reason) {
		out.end(choice.finish_reason);
	}
};

// The first choice (a request with `n` > 1 gets several, each with its index).
const first = value => value?.choices?.find?.(choice => !choice.index);

export const chat = {
	name: 'chat',
	is: value => Array.isArray(value?.choices),
	body(value, out) {
		const choice = first(value);
		if (choice?.message) {
			take(choice, out);
			return true;
		}
	},
	stream: out => (value, data) => {
		if (data === '[DONE]') {
			out.done();
		} else if (first(value)) {
			take(first(value), out);
		}
	},
};
