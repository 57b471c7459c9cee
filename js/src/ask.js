// askJSON: a signed request through the gateway, and the JSON the model wrote, parsed as it streams.
import {readAnswer} from './answer.js';
import {OutputParseError} from './errors.js';
import {request, run} from './fetch.js';
import {createJSONParser} from './json.js';

export const askJSON = (signEndpoint, payload, options = {}) => run(options, async (signal, context) => {
	const response = await request(signEndpoint, payload, options, signal, context);
	const {where} = context;
	let parser = createJSONParser();
	let text = '';
	const take = delta => {
		text += delta;
		options.onText?.(delta);
		let changed;
		try {
			changed = parser?.feed(delta);
		} catch {
			parser = undefined; // Not JSON as it stands; the end may still be (see below).
		}

		if (changed) {
			options.onPartial?.(parser.value);
		}
	};

	const reason = await readAnswer(response, {where}, {text: take});
	if (parser) {
		try {
			return parser.end();
		} catch {}
	}

	try {
		// A model without a JSON mode often fences its answer: ```json ... ```
		return JSON.parse(text.trim().replace(/^```\w*|```$/g, ''));
	} catch (cause) {
		throw new OutputParseError(`${where}: the model's answer is not JSON${reason ? ` (stop reason: ${reason})` : ''}`, {text, cause});
	}
});
