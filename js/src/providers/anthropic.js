// Anthropic Messages: `content_block_delta` events with a `text_delta` or an `input_json_delta`,
// the stop reason in `message_delta`, `message_stop` last; whole, `content[]` blocks of type
// `text` and `tool_use`.

export const anthropic = {
	name: 'anthropic',
	is: value => /^(message|content_block|ping)/.test(value?.type),
	body(value, out) {
		if (!Array.isArray(value.content)) {
			return;
		}

		let called;
		for (const block of value.content) {
			if (block.type === 'text') {
				out.text(block.text);
			} else if (block.type === 'tool_use' && !called) {
				called = true;
				out.call(JSON.stringify(block.input ?? {}));
			}
		}

		out.end(value.stop_reason);
		return true;
	},
	stream(out) {
		// The first tool_use block's index: only its input is read.
		let call;
		return value => {
			const {type, index, delta} = value ?? {};
			if (type === 'content_block_start' && value.content_block?.type === 'tool_use' && call === undefined) {
				call = index;
				out.call('');
			} else if (type === 'content_block_delta' && delta?.type === 'text_delta') {
				out.text(delta.text);
			} else if (type === 'content_block_delta' && delta?.type === 'input_json_delta' && index === call) {
				out.call(delta.partial_json);
			} else if (type === 'message_delta' && delta?.stop_reason) {
				out.end(delta.stop_reason);
			} else if (type === 'message_stop') {
				out.done();
			}
		};
	},
};
