// OpenAI Chat Completions, and every server that copies it (Azure OpenAI, Ollama, vLLM, llama.cpp,
// OpenRouter, Groq, ...): `choices[0].delta.content` and `delta.tool_calls[0].function.arguments`
// streamed, `[DONE]` last; `choices[0].message` whole.

// The first choice: a request with `n` > 1 gets several, each with its index.
const firstChoice = value => value?.choices?.find?.(choice => !choice.index);

const take = (choice, out) => {
	const message = choice.delta ?? choice.message;
	if (message?.content) {
		out.text(message.content);
	}

	// The first tool call: a parallel one comes with another index.
	const call = message?.tool_calls?.find?.(call => !call.index);
	if (call) {
		out.call(call.function?.arguments ?? '');
	}

	if (choice.finish_reason) {
		out.end(choice.finish_reason);
	}
};

export const chat = {
	name: 'chat',
	is: value => Array.isArray(value?.choices),
	body(value, out) {
		const choice = firstChoice(value);
		if (choice?.message) {
			take(choice, out);
			return true;
		}
	},
	stream: out => (value, data) => {
		if (data === '[DONE]') {
			out.done();
		} else if (firstChoice(value)) {
			take(firstChoice(value), out);
		}
	},
};
