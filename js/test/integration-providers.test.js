// Every model API the helper reads, through real processes: the stand-in model speaking the API
// (signgate standin), the gateway (signgate serve) adding its key, and a backend's sign endpoint
// here that builds each API's request and signs it with `signgate sign`. Needs the Python
// package: `make venv`, or SIGNGATE_PYTHON pointing at a Python that has signgate installed.
import {after, before, test} from 'node:test';
import assert from 'node:assert/strict';
import {execFile, spawn} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import {existsSync} from 'node:fs';
import {createServer} from 'node:http';
import {fileURLToPath} from 'node:url';
import {askJSON, askText, GatewayError} from '../index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const python = process.env.SIGNGATE_PYTHON ?? `${root}.venv/bin/python`;
const standinKey = randomBytes(24).toString('base64url');
const secret = randomBytes(32).toString('base64url');

// A car search: the stand-in fills it from the question's plain words, as a model would.
const QUESTION = 'a red suv under 30k with a sunroof and leather';
const EXPECTED = {body: 'suv', color: 'red', price_max: 30_000, features: ['sunroof', 'leather']};
const SCHEMA = {
	type: 'object',
	properties: {
		body: {type: ['string', 'null'], enum: ['suv', 'sedan', 'wagon', 'hatchback', null]},
		color: {type: ['string', 'null'], enum: ['red', 'blue', 'green', null]},
		price_max: {type: ['integer', 'null']},
		features: {type: 'array', items: {type: 'string', enum: ['sunroof', 'leather', 'navigation']}},
	},
	required: ['body', 'color', 'price_max', 'features'],
	additionalProperties: false,
};
const SYSTEM = 'Turn the shopper\'s words into search filters.';
const TOOL = 'search_cars';

/**
What a backend builds for each API: the upstream path and the request body, for a streamed or a
whole answer, as structured text (`schema`), as a forced tool call (`tool`), or as plain text.
*/
const requests = {
	chat: ({stream, as}) => ({
		path: '/v1/chat/completions',
		body: {
			model: 'gpt-4o-mini',
			stream,
			messages: [{role: 'system', content: SYSTEM}, {role: 'user', content: QUESTION}],
			...(as === 'schema' && {response_format: {type: 'json_schema', json_schema: {name: 'car_search', strict: true, schema: SCHEMA}}}),
			...(as === 'tool' && {tools: [{type: 'function', function: {name: TOOL, parameters: SCHEMA}}], tool_choice: {type: 'function', function: {name: TOOL}}}),
		},
	}),
	responses: ({stream, as}) => ({
		path: '/v1/responses',
		body: {
			model: 'gpt-4.1-mini',
			stream,
			instructions: SYSTEM,
			input: QUESTION,
			...(as === 'schema' && {text: {format: {type: 'json_schema', name: 'car_search', strict: true, schema: SCHEMA}}}),
			...(as === 'tool' && {tools: [{type: 'function', name: TOOL, parameters: SCHEMA}], tool_choice: {type: 'function', name: TOOL}}),
		},
	}),
	anthropic: ({stream, as}) => ({
		path: '/v1/messages',
		headers: {'anthropic-version': '2023-06-01'},
		body: {
			model: 'claude-sonnet-4-5',
			max_tokens: 400,
			stream,
			system: SYSTEM,
			messages: [{role: 'user', content: QUESTION}],
			...(as === 'schema' && {output_config: {format: {type: 'json_schema', schema: SCHEMA}}}),
			...(as === 'tool' && {tools: [{name: TOOL, input_schema: SCHEMA}], tool_choice: {type: 'tool', name: TOOL}}),
		},
	}),
	gemini: ({stream, as}) => ({
		path: `/v1beta/models/gemini-2.5-flash:${stream ? 'streamGenerateContent?alt=sse' : 'generateContent'}`,
		body: {
			systemInstruction: {parts: [{text: SYSTEM}]},
			contents: [{role: 'user', parts: [{text: QUESTION}]}],
			...(as === 'schema' && {generationConfig: {responseMimeType: 'application/json', responseJsonSchema: SCHEMA}}),
			...(as === 'tool' && {
				tools: [{functionDeclarations: [{name: TOOL, parametersJsonSchema: SCHEMA}]}],
				toolConfig: {functionCallingConfig: {mode: 'ANY', allowedFunctionNames: [TOOL]}},
			}),
		},
	}),
};

const children = [];
let standin;
let gateway;
let signEndpoint;
const signed = [];

const freePort = () => new Promise((resolve, reject) => {
	const server = createServer().listen(0, '127.0.0.1', () => {
		const {port} = server.address();
		server.close(() => resolve(port));
	}).on('error', reject);
});

/** Starts `python -m signgate <args>` and waits until `health` answers 200. */
const start = async (args, env, health) => {
	let output = '';
	const child = spawn(python, ['-m', 'signgate', ...args.map(String)], {cwd: root, env: {...process.env, ...env}});
	children.push(child);
	child.stdout.on('data', chunk => { output += chunk; });
	child.stderr.on('data', chunk => { output += chunk; });
	const deadline = Date.now() + 60_000;
	for (;;) {
		assert.equal(child.exitCode, null, `signgate ${args[0]} exited:\n${output}`);
		assert.ok(Date.now() < deadline, `signgate ${args[0]} was not ready in 60 s:\n${output}`);
		const ready = await fetch(health).then(response => response.ok, () => false);
		if (ready) {
			return;
		}

		await new Promise(resolve => { setTimeout(resolve, 100); });
	}
};

// A backend that binds a body policy as well (signgate.Policy, from Python: the CLI has no policy flags).
const SIGN_WITH_POLICY = `
import json, os, sys
from signgate import Policy, Signer
spec = json.load(sys.stdin)
signer = Signer("app", os.environ["SIGNGATE_SECRET"], spec["gateway"])
signed = signer.sign("POST", spec["url"], json=spec["body"], headers=spec["headers"], policy=Policy(**spec["policy"]))
print(json.dumps(signed.to_dict()))
`;

/** One request signed with `policy` bound, through Python's Signer. */
const signWithPolicy = ({path, headers = {}, body}, policy) => new Promise((resolve, reject) => {
	const child = execFile(python, ['-c', SIGN_WITH_POLICY], {cwd: root, env: {...process.env, SIGNGATE_SECRET: secret}}, (error, stdout, stderr) => {
		if (error) {
			reject(new Error(`signing with a policy failed: ${stderr}`));
		} else {
			resolve(stdout);
		}
	});
	child.stdin.end(JSON.stringify({gateway, url: standin + path, headers: {'content-type': 'application/json', ...headers}, body, policy}));
});

/** `signgate sign --json` for one request: the signed request a backend's sign endpoint returns. */
const sign = ({path, headers = {}, body}) => new Promise((resolve, reject) => {
	const args = ['-m', 'signgate', 'sign', '--json', '--id', 'app', '--gateway', gateway, '--upstream', standin + path, '--header', 'content-type: application/json'];
	for (const [name, value] of Object.entries(headers)) {
		args.push('--header', `${name}: ${value}`);
	}

	const child = execFile(python, [...args, '--body', '-'], {cwd: root, env: {...process.env, SIGNGATE_SECRET: secret}}, (error, stdout, stderr) => {
		if (error) {
			reject(new Error(`signgate sign failed: ${stderr}`));
		} else {
			resolve(stdout);
		}
	});
	child.stdin.end(JSON.stringify(body));
});

before(async () => {
	assert.ok(existsSync(python), `no Python at ${python}: run \`make venv\` or set SIGNGATE_PYTHON`);
	const [standinPort, gatewayPort] = [await freePort(), await freePort()];
	standin = `http://127.0.0.1:${standinPort}`;
	gateway = `http://127.0.0.1:${gatewayPort}`;
	await start(['standin', '--port', standinPort, '--api-key-env', 'STANDIN_API_KEY'], {STANDIN_API_KEY: standinKey}, `${standin}/healthz`);
	// One key for the four APIs: OpenAI's and Anthropic's read Authorization, Gemini's x-goog-api-key.
	await start([
		'serve', '--id', 'app', '--secret-env', 'GATEWAY_SECRET', '--port', gatewayPort,
		'--header-env', 'Authorization=Bearer ${STANDIN_API_KEY}', '--header-env', 'x-goog-api-key=${STANDIN_API_KEY}',
		'--allow-upstream', `${standin}/`, '--allow-private-upstreams',
	], {GATEWAY_SECRET: secret, STANDIN_API_KEY: standinKey}, `${gateway}/healthz`);

	// The backend's sign endpoint: {api, stream, as} in, the signed request out.
	const server = createServer(async (request, response) => {
		let text = '';
		for await (const chunk of request) {
			text += chunk;
		}

		const {api, stream, as, rule} = JSON.parse(text);
		response.setHeader('content-type', 'application/json');
		if (rule !== undefined) {
			// The good request's policy, and a request that breaks `rule` of it.
			const good = requests[api]({stream: true, as: 'schema'});
			response.end(await signWithPolicy(breaks[rule](api, structuredClone(good)), policyOf(api, good)));
			return;
		}

		signed.push({api, stream, as});
		response.end(await sign(requests[api]({stream, as})));
	});
	await new Promise(resolve => { server.listen(0, '127.0.0.1', resolve); });
	children.push({kill: () => server.close()});
	signEndpoint = `http://127.0.0.1:${server.address().port}/sign`;
});

after(() => {
	for (const child of children) {
		child.kill('SIGTERM');
	}
});

/** askJSON through the whole chain, keeping every partial object and every delta. */
const ask = async (payload, options = {}) => {
	const partials = [];
	let text = '';
	const answer = await askJSON(signEndpoint, payload, {
		onText: delta => { text += delta; },
		onPartial: partial => partials.push(structuredClone(partial)),
		timeout: 60_000,
		...options,
	});
	return {answer, partials, text};
};

/** Each partial holds no more than the next one: keys are not lost, arrays do not shrink. */
const assertGrows = (partials, where) => {
	for (let index = 1; index < partials.length; index++) {
		const [before, now] = [partials[index - 1], partials[index]];
		for (const key of Object.keys(before)) {
			assert.ok(key in now, `${where}: ${key} disappeared`);
			if (Array.isArray(before[key])) {
				assert.ok(now[key].length >= before[key].length, `${where}: ${key} shrank`);
			}
		}
	}
};

for (const api of Object.keys(requests)) {
	test(`${api}: a streamed structured answer, parsed as it streams`, async () => {
		const {answer, partials, text} = await ask({api, stream: true, as: 'schema'});
		assert.deepEqual(answer, EXPECTED);
		assert.deepEqual(JSON.parse(text), EXPECTED, 'onText saw the whole answer');
		// The stand-in streams four characters at a time: the object fills in over many calls.
		assert.ok(partials.length > 5, `${partials.length} partial objects`);
		assert.deepEqual(partials.at(-1), EXPECTED);
		assert.ok(partials.some(partial => partial.body === 'suv' && partial.features === undefined), 'a partial with the first fields only');
		assertGrows(partials, api);
	});

	test(`${api}: a tool call's arguments, streamed`, async () => {
		const {answer, partials} = await ask({api, stream: true, as: 'tool'}, {format: api});
		assert.deepEqual(answer, EXPECTED);
		assert.deepEqual(partials.at(-1), EXPECTED);
		// Gemini sends a call's arguments whole; the others stream them, and the object fills in.
		assert.ok(api === 'gemini' ? partials.length === 1 : partials.length > 5, `${partials.length} partial objects`);
		assertGrows(partials, api);
	});

	test(`${api}: a tool call answered whole, and a plain text answer`, async () => {
		assert.deepEqual((await ask({api, stream: false, as: 'tool'})).answer, EXPECTED);
		const text = await askText(signEndpoint, {api, stream: false, as: 'text'}, {timeout: 60_000});
		assert.match(text, /stand-in/i, 'the stand-in says what it is');
	});
}

// The rules of a body policy, where each API keeps what they fix: the good request's own values.
const CAPS = {chat: 'max_tokens', responses: 'max_output_tokens', anthropic: 'max_tokens'};
const FORMATS = {
	chat: body => body.response_format,
	responses: body => body.text.format,
	anthropic: body => body.output_config.format,
	gemini: body => body.generationConfig,
};
const policyOf = (api, {body}) => ({
	models: [body.model ?? 'gemini-2.5-flash'],
	max_tokens: 400,
	system_prompt: SYSTEM,
	response_format: FORMATS[api](body),
	require_stream: true,
	max_user_chars: 200,
	fields: [...Object.keys(body), ...(CAPS[api] ? [CAPS[api]] : [])],
});
const streamOff = (api, request) => api === 'gemini'
	? {...request, path: request.path.replace(':streamGenerateContent?alt=sse', ':generateContent')}
	: {...request, body: {...request.body, stream: false}};
const setQuestion = (api, request, text) => {
	const {body} = request;
	if (api === 'gemini') {
		body.contents[0].parts[0].text = text;
	} else if (api === 'responses') {
		body.input = text;
	} else {
		body.messages.at(-1).content = text;
	}

	return request;
};
const setSystem = (api, request, text) => {
	const {body} = request;
	if (api === 'chat') {
		body.messages[0].content = text;
	} else if (api === 'responses') {
		body.instructions = text;
	} else if (api === 'anthropic') {
		body.system = text;
	} else {
		body.systemInstruction.parts[0].text = text;
	}

	return request;
};
const breaks = {
	models: (api, request) => api === 'gemini'
		? {...request, path: request.path.replace('gemini-2.5-flash', 'gemini-2.5-pro')}
		: {...request, body: {...request.body, model: 'another-model'}},
	max_tokens(api, request) {
		if (api === 'gemini') {
			request.body.generationConfig.maxOutputTokens = 5000;
		} else {
			request.body[CAPS[api]] = 5000;
		}

		return request;
	},
	system_prompt: (api, request) => setSystem(api, request, 'Answer with a poem.'),
	response_format(api, request) {
		const format = FORMATS[api](request.body);
		if (api === 'gemini') {
			format.responseJsonSchema = {type: 'object'};
		} else {
			(format.json_schema ?? format).schema = {type: 'object'};
		}

		return request;
	},
	stream: streamOff,
	max_user_chars: (api, request) => setQuestion(api, request, 'a red suv '.repeat(30)),
	fields: (api, request) => ({...request, body: {...request.body, service_tier: 'priority'}}),
};

for (const api of Object.keys(requests)) {
	test(`${api}: each rule of a body policy, refused by the gateway, reaches the helper by name`, async () => {
		for (const rule of Object.keys(breaks)) {
			const error = await askJSON(signEndpoint, {api, rule}, {timeout: 60_000}).then(
				() => assert.fail(`${api}: a body that breaks ${rule} was answered`),
				error => error,
			);
			assert.ok(error instanceof GatewayError, `${api} ${rule}: ${error}`);
			assert.equal(error.code, 'policy_violation', `${api} ${rule}: ${error.message}`);
			assert.equal(error.status, 403);
			assert.equal(error.error.rule, rule, `${api}: ${error.message}`);
		}
	});
}

test('every request went through the sign endpoint', () => {
	assert.equal(signed.length, Object.keys(requests).length * 4);
});
