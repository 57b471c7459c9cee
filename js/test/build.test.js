// The shipped js/index.js is built from js/src/: it must be exactly what the build makes of the
// sources today, one module that imports nothing, exporting what js/src/index.js exports.
import assert from 'node:assert/strict';
import {readFile} from 'node:fs/promises';
import test from 'node:test';
import {build, shipped} from '../scripts/build.js';
import * as built from '../index.js';
import * as source from '../src/index.js';

test('js/index.js is what js/src/ builds (run `npm run build` after editing js/src/)', async () => {
	assert.equal(await readFile(shipped, 'utf8'), await build());
});

test('the shipped module imports nothing', async () => {
	const text = await readFile(shipped, 'utf8');
	assert.doesNotMatch(text, /^\s*import[\s{*'"]|\bimport\s*\(|\brequire\s*\(/m);
});

test('the shipped module exports what the sources export', () => {
	assert.deepEqual(Object.keys(built).sort(), Object.keys(source).sort());
	for (const [name, value] of Object.entries(built)) {
		assert.equal(typeof value, typeof source[name], name);
	}
});
