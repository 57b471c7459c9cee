// A real HTTP server on a local socket for the client tests: it plays the app's sign endpoint
// (/sign) and the gateway with the model behind it (/gateway/...).
import assert from 'node:assert/strict';
import {once} from 'node:events';
import {createServer} from 'node:http';

export const SIGNATURE = 'c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr';

export const readBody = async request => {
	let body = '';
	for await (const chunk of request) {
		body += chunk;
	}

	return body;
};

export const listen = async (t, handler) => {
	const server = createServer(handler);
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	t.after(() => {
		server.closeAllConnections();
		server.close();
	});
	return `http://127.0.0.1:${server.address().port}`;
};

export const closedPort = async () => {
	const server = createServer();
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	const {port} = server.address();
	server.close();
	await once(server, 'close');
	return `http://127.0.0.1:${port}`;
};

/**
Starts the server. `gateway(request, response, {attempt, body})` answers the gateway's calls;
`sign(request, response, {body, base})`, if given, replaces the default sign endpoint.
Returns the sign endpoint's URL and a log of what each side received.
*/
export const serve = async (t, {gateway, sign} = {}) => {
	const log = {sign: [], gateway: []};
	let base;
	base = await listen(t, async (request, response) => {
		const body = await readBody(request);
		const entry = {method: request.method, url: request.url, headers: request.headers, body};
		if (request.url.startsWith('/sign')) {
			log.sign.push(entry);
			if (sign) {
				return sign(request, response, {body, base});
			}

			response.setHeader('content-type', 'application/json');
			response.end(JSON.stringify({
				url: `${base}/gateway/v1/chat/completions?X-Sw-Expires=60&X-Sw-Signature=${SIGNATURE}${log.sign.length}`,
				method: 'POST',
				headers: {'content-type': 'application/json', 'x-model-hint': 'fast'},
				body: JSON.stringify({model: 'm', stream: true, messages: [{role: 'user', content: JSON.parse(body).question}]}),
			}));
		} else {
			log.gateway.push(entry);
			await gateway(request, response, {attempt: log.gateway.length, body});
		}
	});
	return {endpoint: `${base}/sign`, log, base};
};

export const chunk = (content, finish = null) => ({
	id: 'chatcmpl-1',
	object: 'chat.completion.chunk',
	choices: [{index: 0, delta: content === undefined ? {} : {role: 'assistant', content}, finish_reason: finish}],
});

export const startStream = response => {
	response.writeHead(200, {'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store'});
	response.flushHeaders();
};

export const event = data => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

/** A gateway that streams `pieces` of the answer, then a stop chunk and [DONE]. */
export const streaming = pieces => (request, response) => {
	startStream(response);
	for (const piece of pieces) {
		response.write(event(chunk(piece)));
	}

	response.end(event(chunk(undefined, 'stop')) + event('[DONE]'));
};

export const refuse = (status, code, extra = {}) => (request, response) => {
	response.writeHead(status, {'content-type': 'application/json', 'x-signgate-error': code});
	response.end(JSON.stringify({error: {code, message: `refused: ${code}`, ...extra}}));
};

/** Every error must name what failed, and never carry the signed URL's query string. */
export const assertSafe = (error, pattern) => {
	assert.ok(error instanceof Error && typeof error.code === 'string', `${error} is an Error with a code`);
	assert.match(error.message, pattern);
	const seen = new Set();
	const check = value => {
		if (value === null || typeof value !== 'object' || seen.has(value)) {
			return;
		}

		seen.add(value);
		for (const text of [value.message, value.stack, JSON.stringify(Object.assign({}, value))]) {
			assert.ok(!String(text).includes(SIGNATURE), `the signature leaked into ${text}`);
			assert.ok(!String(text).includes('X-Sw-'), `the query string leaked into ${text}`);
		}

		check(value.cause);
		check(value.error);
	};

	check(error);
	return true;
};
