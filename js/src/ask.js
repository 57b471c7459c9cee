// askJSON and askText: a signed request through the gateway, and what the model wrote, read from
// whichever API answered.
import {readAnswer} from './answer.js';
import {OutputParseError} from './errors.js';
import {request, run} from './fetch.js';
import {createJSONParser} from './json.js';
import {providers} from './providers/index.js';

const ask = (signEndpoint, payload, options, out, result) => run(options, async (signal, context) => {
	const {format} = options;
	const provider = providers.find(candidate => candidate.name === format);
	if (format !== undefined && !provider) {
		throw new TypeError(`format must be one of ${providers.map(candidate => `'${candidate.name}'`).join(', ')}, or left out to recognise the API from its answer; got ${JSON.stringify(format)}`);
	}

	const response = await request(signEndpoint, payload, options, signal, context);
	return result(context.where, await readAnswer(response, {where: context.where, provider}, out));
});

export const askJSON = (signEndpoint, payload, options = {}) => {
	// The model writes its JSON as text, or as a tool call's arguments: one parser for each.
	const channel = () => ({text: '', parser: createJSONParser()});
	const message = channel();
	let call;
	const take = (target, delta) => {
		if (!delta) {
			return; // A tool call opening: its channel exists now, and {} is its answer until more comes.
		}

		target.text += delta;
		options.onText?.(delta);
		let changed;
		try {
			changed = target.parser?.feed(delta);
		} catch {
			target.parser = undefined; // Not JSON as it stands; the end may still be (see below).
		}

		if (changed) {
			options.onPartial?.(target.parser.value);
		}
	};

	return ask(signEndpoint, payload, options, {
		text: delta => take(message, delta),
		call: delta => take(call ??= channel(), delta),
	}, (where, reason) => {
		// A tool call's arguments are the answer when there is one; a call without any is {}.
		const {parser} = call ?? message;
		const text = call ? call.text || '{}' : message.text;
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
};

export const askText = (signEndpoint, payload, options = {}) => {
	let text = '';
	return ask(signEndpoint, payload, options, {
		text(delta) {
			text += delta;
			options.onText?.(delta);
		},
		call() {},
	}, () => text);
};
