// Reads a model API's answer from the gateway's 2xx Response, streamed (text/event-stream) or
// whole, and hands what the model wrote to `out`. Which API answered is recognised from the answer
// unless the caller named it; this module knows no API's shapes, its providers do.
//
// A provider (providers/*.js) is {name, is, body, stream}:
//   is(value)          whether a parsed answer body or stream event is in this API's shape
//   body(value, sink)  reads a whole answer; returns true if it was one
//   stream(sink)       a function taking each event of one stream: (value, data), the event's
//                      data parsed as JSON (undefined when it is not) and as sent
// and reports to the sink: text(delta) the model's text, call(delta) the first tool call's
// arguments ('' when the call opens), end(reason) the API's stop reason, done() the stream's
// last event, fail(error) an error object the API sent.
//
// The gateway itself may end a stream it is relaying (its URL was revoked): it sends an event
// named `signgate-error` whose data is its error, {"error": {code, message, ...}, "status"}, then
// breaks the connection off. That event is read before any API's, as a GatewayError.
import {GatewayError, StreamError, UpstreamError} from './errors.js';
import {parseJSON} from './json.js';
import {providers} from './providers/index.js';
import {createSSEParser, SSEParseError} from './sse.js';

/** The event name the gateway ends a stream with. */
export const GATEWAY_EVENT = 'signgate-error';

/**
Reads the answer; resolves with the API's stop reason (e.g. `length` when the answer was cut), if
it sent one. `out.text(delta)` gets the model's text as it arrives; `provider`, if given, is the
API the answer is read as. Throws UpstreamError when the API reports an error, GatewayError when
the gateway ends the stream (`revoked`), StreamError when the stream breaks or ends before the
answer is complete.
*/
export const readAnswer = async (response, {where, provider}, out) => {
	const {status} = response;
	let reason;
	let complete;
	const fail = error => {
		throw new UpstreamError(`${where}: the upstream sent an error in the stream`, {status, error});
	};

	// What a provider module reports: the model's text, its stop reason, the stream's end, an error.
	// Only strings pass as text: an upstream may send anything where text belongs.
	const sink = {
		text: delta => typeof delta === 'string' && out.text(delta),
		call: delta => typeof delta === 'string' && out.call(delta),
		end(value) {
			reason = value;
		},
		done() {
			complete = true;
		},
		fail,
	};

	if (!/text\/event-stream/.test(response.headers.get('content-type'))) {
		const body = await response.text();
		const value = parseJSON(body);
		provider ??= providers.find(candidate => candidate.is(value));
		if (value == null || !provider?.body(value, sink)) {
			throw new UpstreamError(`${where}: the upstream answered ${status} with something that is not a model's answer`, {status, error: value?.error, body});
		}

		return reason;
	}

	let handle;
	const events = createSSEParser({
		onEvent({data, event}) {
			if (complete) {
				return;
			}

			const value = parseJSON(data);
			if (event === GATEWAY_EVENT) {
				const error = typeof value?.error?.code === 'string' ? value.error : {code: 'stream_broken'};
				const message = typeof error.message === 'string' ? ': ' + error.message : '';
				throw new GatewayError(`${where}: the gateway ended the stream: ${error.code}${message}`, {
					code: error.code,
					status: Number.isInteger(value?.status) ? value.status : status,
					error,
				});
			}

			// An error object in place of an event is how every API read here reports a late failure.
			if (value?.error) {
				fail(value.error);
			}

			provider ??= providers.find(candidate => candidate.is(value));
			handle ??= provider?.stream(sink);
			handle?.(value, data);
		},
	});
	const reader = response.body.getReader();
	try {
		while (!complete) {
			let chunk;
			try {
				chunk = await reader.read();
			} catch (cause) {
				// The model had finished: a connection cut before the stream's last event loses nothing.
				if (reason) {
					break;
				}

				throw new StreamError(`${where}: the stream broke before the answer was complete`, {cause});
			}

			if (chunk.done) {
				break;
			}

			try {
				events.feed(chunk.value);
			} catch (error) {
				throw error instanceof SSEParseError
					? new StreamError(`${where}: ${error.message}`, {code: 'sse_buffer_overflow', cause: error})
					: error;
			}
		}
	} finally {
		reader.cancel().catch(() => {});
	}

	if (!complete && !reason) {
		throw new StreamError(`${where}: the stream ended before the answer was complete`);
	}

	return reason;
};
