// The two requests behind every call: the app's sign endpoint, then the signed request to the
// gateway. Each failure becomes one of the typed errors; abort and timeout are handled here too.
import {AbortError, GatewayError, SignEndpointError, TimeoutError, UpstreamError} from './errors.js';
import {parseJSON} from './json.js';

// A URL without its query string and fragment: the query string of a signed URL holds its signature.
const bare = url => String(url).replace(/[?#][^]*/, '');

// Retry-After in seconds, from delta-seconds or an HTTP date; undefined when absent or unreadable.
const retryAfter = headers => {
	const value = headers.get('retry-after')?.trim() ?? '';
	// An HTTP date names its day and month; Date.parse alone would take '-5' or '1.5' for dates.
	const date = /[a-z]/i.test(value) && Date.parse(value);
	return /^\d+$/.test(value) ? Number(value) : date ? Math.max(0, Math.ceil((date - Date.now()) / 1000)) : undefined;
};

/**
Runs `call(signal, context)` under the caller's signal and timeout. `context.where` names the
request in progress, for the message of an abort or a timeout. With `keepListening`, the caller's
signal stays connected after the call returns: signedFetch's caller still reads the body.
*/
export const run = async (options, call, keepListening) => {
	const {signal, timeout} = options;
	const context = {where: ''};
	let controller;
	let timer;
	let timedOut;
	const abort = () => controller.abort(signal.reason);
	if (timeout != null && timeout < 2 ** 31) {
		controller = new AbortController();
		if (signal?.aborted) {
			abort();
		}

		signal?.addEventListener('abort', abort, {once: true});
		timer = setTimeout(() => {
			timedOut = true;
			controller.abort();
		}, timeout);
	}

	const active = controller?.signal ?? signal;
	try {
		return await call(active, context);
	} catch (error) {
		if (active?.aborted) {
			throw timedOut
				? new TimeoutError(`${context.where} timed out after ${timeout} ms`, {cause: error})
				: new AbortError(`${context.where} was aborted`, {cause: signal.reason});
		}

		throw error;
	} finally {
		clearTimeout(timer);
		if (!keepListening) {
			signal?.removeEventListener('abort', abort);
		}
	}
};

/** Signs through the app, sends the signed request, and resolves with the gateway's 2xx Response. */
export const request = async (signEndpoint, payload, options, signal, context) => {
	const fetch_ = options.fetch ?? fetch;
	for (let retried = false; ; retried = true) {
		context.where = 'POST ' + bare(signEndpoint);
		const headers = new Headers(options.headers);
		if (!headers.has('content-type')) {
			headers.set('content-type', 'application/json');
		}

		let response;
		let text;
		try {
			response = await fetch_(signEndpoint, {
				method: 'POST',
				headers,
				body: JSON.stringify(payload),
				credentials: options.credentials ?? 'same-origin',
				signal,
			});
			text = await response.text();
		} catch (cause) {
			throw new SignEndpointError(`${context.where} failed: the sign endpoint could not be reached`, {status: response?.status ?? 0, cause});
		}

		let {status} = response;
		if (!response.ok) {
			// The app's own error, when it answers in the gateway's shape {"error": {"code", "message"}}.
			let {error} = parseJSON(text) ?? {};
			error = typeof error?.code === 'string' ? error : undefined;
			const message = typeof error?.message === 'string' ? ': ' + error.message : '';
			throw new SignEndpointError(`${context.where} answered ${status}${message}`, {status, error, retryAfter: retryAfter(response.headers), body: text});
		}

		const signed = parseJSON(text);
		if (typeof signed?.url !== 'string') {
			throw new SignEndpointError(`${context.where} did not answer with a signed request {url, method, headers, body}`, {status, body: text});
		}

		context.where = `${signed.method} ${bare(signed.url)}`;
		try {
			// Exactly what the backend signed; the gateway never gets the app's cookies.
			response = await fetch_(signed.url, {
				method: signed.method,
				headers: signed.headers,
				body: signed.body,
				credentials: 'omit',
				signal,
			});
		} catch (cause) {
			throw new GatewayError(`${context.where} failed: the gateway could not be reached`, {code: 'network_error', status: 0, cause});
		}

		if (response.ok) {
			return response;
		}

		({status} = response);
		const code = response.headers.get('x-signgate-error');
		text = await response.text().catch(() => '');
		const error = parseJSON(text)?.error;
		const fields = {status, retryAfter: retryAfter(response.headers)};
		if (code) {
			// An expired URL is the one refusal a fresh signature cures; the answer has not begun.
			if (code === 'expired' && status === 401 && !retried) {
				continue;
			}

			throw new GatewayError(`${context.where} was refused by the gateway: ${status} ${code}${error?.message ? ': ' + error.message : ''}`, {code, error: error ?? {code}, ...fields});
		}

		// The error's kind, in its own words: the first of its code, type and status that is a word.
		const kind = [error?.code, error?.type, error?.status].find(value => typeof value === 'string');
		throw new UpstreamError(`${context.where}: the upstream answered ${status}${kind ? ` (${kind})` : ''}`, {error, body: text, ...fields});
	}
};

export const signedFetch = (signEndpoint, payload, options = {}) =>
	run(options, (signal, context) => request(signEndpoint, payload, options, signal, context), true);
