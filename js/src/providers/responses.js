// OpenAI Responses: `response.output_text.delta` and `response.function_call_arguments.delta`
// events, ending with `response.completed` (or `.incomplete`, `.failed`); whole, `output[]` items
// of type `message` (with `output_text` parts) and `function_call`.

// The Responses API's words for how it ended, as a stop reason.
const finish = (response, out) => {
	if (response?.status === 'failed') {
		out.fail(response.error ?? {});
	}

	out.end(response?.incomplete_details?.reason ?? response?.status ?? 'completed');
};

export const responses = {
	name: 'responses',
	is: value => /^response\./.test(value?.type) || value?.object === 'response',
	body(value, out) {
		if (!Array.isArray(value.output)) {
			return;
		}

		let called;
		for (const item of value.output) {
			if (item.type === 'message') {
				for (const part of item.content ?? []) {
					if (part.type === 'output_text') {
						out.text(part.text);
					}
				}
			} else if (item.type === 'function_call' && !called) {
				called = true;
				out.call(item.arguments ?? '');
			}
		}

		finish(value, out);
		return true;
	},
	stream(out) {
		// The first function call's item id: only its arguments are read.
		let call;
		return value => {
			const {type} = value ?? {};
			if (type === 'response.output_text.delta') {
				out.text(value.delta);
			} else if (type === 'response.output_item.added' && value.item?.type === 'function_call' && call === undefined) {
				call = value.item.id;
				out.call(value.item.arguments ?? '');
			} else if (type === 'response.function_call_arguments.delta' && (call ??= value.item_id) === value.item_id) {
				out.call(value.delta);
			} else if (/^response\.(completed|incomplete|failed)$/.test(type)) {
				finish(value.response, out);
				out.done();
			} else if (type === 'error') {
				out.fail(value);
			}
		};
	},
};
