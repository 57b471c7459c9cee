// Google Gemini (generateContent, and streamGenerateContent with ?alt=sse): every chunk, and the
// whole answer, is `candidates[0].content.parts[]` with `text` or a `functionCall` whose `args`
// come whole; `finishReason` ends it. A stream has no last event of its own.

const take = (value, out, state) => {
	const candidate = value.candidates?.find?.(candidate => !candidate.index);
	for (const part of candidate?.content?.parts ?? []) {
		// A thought summary (with includeThoughts) is not part of the answer.
		if (part.thought) {
			continue;
		}

		if (part.text) {
			out.text(part.text);
		}

		if (part.functionCall && !state.called) {
			state.called = true;
			out.call(JSON.stringify(part.functionCall.args ?? {}));
		}
	}

	// A prompt refused outright has no candidate, only the reason.
	const reason = candidate?.finishReason ?? value.promptFeedback?.blockReason;
	if (reason) {
		out.end(reason);
	}
};

const is = value => Array.isArray(value?.candidates) || Boolean(value?.promptFeedback);

export const gemini = {
	name: 'gemini',
	is,
	body(value, out) {
		if (is(value)) {
			take(value, out, {});
			return true;
		}
	},
	stream(out) {
		const state = {};
		return value => value && take(value, out, state);
	},
};
