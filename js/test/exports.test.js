// The hand-written index.d.ts must describe exactly what index.js exports, each with an @example.
import assert from 'node:assert/strict';
import {readFile} from 'node:fs/promises';
import test from 'node:test';
import * as signgate from '../index.js';

const declarations = await readFile(new URL('../index.d.ts', import.meta.url), 'utf8');
const exported = [...declarations.matchAll(/^export (?:declare )?(function|class|type|const) (\w+)/gm)];

test('index.d.ts declares every runtime export, and nothing that is not there', () => {
	const declared = exported.filter(([, kind]) => kind !== 'type').map(([, , name]) => name).sort();
	assert.deepEqual(declared, Object.keys(signgate).sort());
});

test('every declared export has a doc comment with an @example', () => {
	assert.ok(exported.length > 10);
	for (const match of exported) {
		const before = declarations.slice(0, match.index).trimEnd();
		assert.ok(before.endsWith('*/'), `${match[2]} has no doc comment`);
		const comment = before.slice(before.lastIndexOf('/**'));
		assert.match(comment, /@example\n```\n[^]+\n```/, `${match[2]} has no @example`);
	}
});

test('every error class is a SigngateError with its own name and code', () => {
	const codes = {
		SignEndpointError: 'sign_failed',
		UpstreamError: 'upstream_error',
		StreamError: 'stream_broken',
		OutputParseError: 'invalid_output',
		AbortError: 'aborted',
		TimeoutError: 'timeout',
	};
	for (const [name, code] of Object.entries(codes)) {
		const error = new signgate[name]('message', {status: 1});
		assert.ok(error instanceof signgate.SigngateError);
		assert.ok(error instanceof Error);
		assert.equal(error.name, name);
		assert.equal(error.code, code);
		assert.equal(error.status, 1);
	}

	const gateway = new signgate.GatewayError('message', {code: 'expired'});
	assert.equal(gateway.name, 'GatewayError');
	assert.equal(gateway.code, 'expired');
	assert.equal(new signgate.StreamError('message', {code: 'sse_buffer_overflow'}).code, 'sse_buffer_overflow');
	assert.equal(new signgate.SigngateError('message', {cause: 1}).cause, 1);
	assert.equal('cause' in new signgate.SigngateError('message'), false);
});

test('the parsers\' errors are their own, not the client\'s', () => {
	const sse = new signgate.SSEParseError('too long', 'buffer_overflow');
	assert.deepEqual([sse.name, sse.type, sse.message], ['SSEParseError', 'buffer_overflow', 'too long']);
	assert.ok(!(sse instanceof signgate.SigngateError));
	const json = new signgate.JSONParseError('Unexpected end of JSON input', 'unexpected_end', 3);
	assert.deepEqual([json.name, json.type, json.position], ['JSONParseError', 'unexpected_end', 3]);
	assert.ok(json instanceof SyntaxError);
	assert.ok(!(json instanceof signgate.SigngateError));
});
