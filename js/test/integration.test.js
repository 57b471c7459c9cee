// The package against the real thing: `python -m demo` starts the stand-in model, the gateway
// (signgate serve) and the app whose sign endpoint the helper calls. Needs the Python package:
// `make venv`, or SIGNGATE_PYTHON pointing at a Python that has signgate installed.
import {after, before, test} from 'node:test';
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {existsSync} from 'node:fs';
import {createServer} from 'node:net';
import {fileURLToPath} from 'node:url';
import {askJSON, signedFetch, GatewayError} from '../index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const python = process.env.SIGNGATE_PYTHON ?? `${root}.venv/bin/python`;

const freePort = () => new Promise((resolve, reject) => {
	const server = createServer().listen(0, '127.0.0.1', () => {
		const {port} = server.address();
		server.close(() => resolve(port));
	}).on('error', reject);
});

let stack;
let app;
let output = '';

before(async () => {
	assert.ok(existsSync(python), `no Python at ${python}: run \`make venv\` or set SIGNGATE_PYTHON`);
	const [port, gatewayPort, standinPort] = [await freePort(), await freePort(), await freePort()];
	app = `http://127.0.0.1:${port}`;
	stack = spawn(python, ['-m', 'demo', '--port', port, '--gateway-port', gatewayPort,
		'--standin-port', standinPort, '--quiet'].map(String), {
		cwd: root,
		// 3 s signed URLs, so a held-back request expires at the real gateway. A URL lives from the
		// whole second it was signed in until that instant + 3 s: between 2 and 3 s of real time.
		env: {...process.env, SIGN_EXPIRES: '3', SIGN_RATE_LIMIT: '100'},
	});
	stack.stdout.on('data', chunk => { output += chunk; });
	stack.stderr.on('data', chunk => { output += chunk; });
	const deadline = Date.now() + 60_000;
	while (!output.split('\n').includes('ready')) {
		assert.equal(stack.exitCode, null, `python -m demo exited:\n${output}`);
		assert.ok(Date.now() < deadline, `python -m demo was not ready in 60 s:\n${output}`);
		await new Promise(resolve => { setTimeout(resolve, 100); });
	}
});

after(() => {
	stack?.kill('SIGTERM');
});

/** A session with the app: its cookie and CSRF token, sent to the sign endpoint only. */
const session = async () => {
	const page = await fetch(`${app}/cars`);
	const cookie = page.headers.getSetCookie().map(c => c.split(';')[0]).join('; ');
	const [, token] = (await page.text()).match(/<meta name="csrf-token" content="([^"]+)"/);
	return {cookie, 'x-csrf-token': token};
};

/** fetch that records gateway calls, and can delay or alter them. */
const recording = ({delayFirst = 0, alter} = {}) => {
	const gatewayCalls = [];
	const signCalls = [];
	const fetchImpl = async (url, init) => {
		if (String(url).includes('/api/search/sign')) {
			signCalls.push(url);
			return fetch(url, init);
		}
		gatewayCalls.push({url: String(url), init});
		if (gatewayCalls.length === 1 && delayFirst) {
			await new Promise(resolve => { setTimeout(resolve, delayFirst); });
		}
		return fetch(url, alter ? alter(init) : init);
	};
	return {fetchImpl, gatewayCalls, signCalls};
};

test('askJSON streams the answer through the real gateway and parses it', async () => {
	const partials = [];
	let text = '';
	const {fetchImpl, gatewayCalls} = recording();
	const answer = await askJSON(`${app}/api/search/sign`, {query: 'a manual diesel wagon, newest first'}, {
		headers: await session(),
		fetch: fetchImpl,
		onText: delta => { text += delta; },
		onPartial: partial => partials.push(JSON.stringify(partial)),
	});
	const filters = Object.fromEntries(Object.entries(answer.filters).filter(([, v]) => v !== null && !(Array.isArray(v) && v.length === 0)));
	assert.deepEqual(filters, {body: 'wagon', fuel: 'diesel', transmission: 'manual', sort: 'year_desc'});
	assert.deepEqual(JSON.parse(text), answer);
	assert.ok(partials.length > 3, 'the object grew as the answer streamed');
	assert.equal(gatewayCalls.length, 1);
	assert.equal(gatewayCalls[0].init.credentials, 'omit', 'no cookies go to the gateway');
});

test('an expired signed request is re-signed once, at the real gateway', async () => {
	const {fetchImpl, gatewayCalls, signCalls} = recording({delayFirst: 4500});
	const answer = await askJSON(`${app}/api/search/sign`, {query: 'a red hatchback'}, {
		headers: await session(),
		fetch: fetchImpl,
	});
	assert.equal(answer.filters.body, 'hatchback');
	assert.equal(signCalls.length, 2);
	assert.equal(gatewayCalls.length, 2);
	assert.notEqual(gatewayCalls[0].url, gatewayCalls[1].url);
});

test('a body altered in flight is refused by the gateway as bad_signature', async () => {
	const alter = init => ({...init, body: init.body.replace('a blue coupe', 'write me a poem')});
	const {fetchImpl} = recording({alter});
	await assert.rejects(
		askJSON(`${app}/api/search/sign`, {query: 'a blue coupe'}, {headers: await session(), fetch: fetchImpl}),
		error => error instanceof GatewayError && error.code === 'bad_signature' && error.status === 401
			&& !error.message.includes('X-Sw-Signature'),
	);
});

test('signedFetch returns the gateway response; a replay of a single-use URL is refused', async () => {
	const {fetchImpl, gatewayCalls} = recording();
	const response = await signedFetch(`${app}/api/search/sign`, {query: 'a white minivan'}, {
		headers: await session(),
		fetch: fetchImpl,
	});
	assert.equal(response.status, 200);
	assert.match(response.headers.get('content-type'), /^text\/event-stream/);
	// Replayed while the first answer streams: well inside the URL's lifetime, so only the nonce refuses it.
	const replay = await fetch(gatewayCalls[0].url, gatewayCalls[0].init);
	assert.equal(replay.status, 409);
	assert.equal((await replay.json()).error.code, 'replayed');
	assert.match(await response.text(), /data: \[DONE]/);
});

test('over the real gateway\'s per-user limit: GatewayError requests_per_minute_exceeded, with retryAfter', async () => {
	// python -m demo runs the gateway with --limit user.requests_per_minute=30. A calendar minute
	// may turn over once on the way, so allow for twice the limit before the refusal.
	const headers = await session();
	let refusal;
	for (let admitted = 0; admitted < 61 && !refusal;) {
		try {
			// Counted once admitted: the answer itself is not needed.
			await (await signedFetch(`${app}/api/search/sign`, {query: 'a green estate'}, {headers})).body.cancel();
			admitted++;
		} catch (error) {
			// The gateway frees a cancelled stream's slot (3 a user) a moment later, and a refusal
			// counts no request: wait and go on.
			if (error.code === 'concurrent_streams_exceeded') {
				await new Promise(resolve => { setTimeout(resolve, 100); });
				continue;
			}

			refusal = error;
		}
	}

	assert.ok(refusal instanceof GatewayError, `no refusal in 61 admitted requests, or another error: ${refusal}`);
	assert.equal(refusal.code, 'requests_per_minute_exceeded');
	assert.equal(refusal.status, 429);
	assert.deepEqual([refusal.error.scope, refusal.error.limit], ['user', 30]);
	assert.ok(refusal.retryAfter >= 1 && refusal.retryAfter <= 60, `retryAfter ${refusal.retryAfter}`);
	assert.match(refusal.message, /was refused by the gateway: 429 requests_per_minute_exceeded: the user's limit of 30 requests per minute is reached$/);
});
