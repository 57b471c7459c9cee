// The npm package as it would be published: `npm pack` at the repository root must give a tarball
// holding the browser helper's README (as the package's README), the module, the types, LICENSE
// and package.json, and nothing else; `npm publish --dry-run` must accept it.
import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import test from 'node:test';
import {fileURLToPath} from 'node:url';
import {promisify} from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const read = path => readFile(join(root, path));

test('npm pack at the repository root packs exactly the helper, its types, README and LICENSE', {timeout: 120_000}, async t => {
	const directory = await mkdtemp(join(tmpdir(), 'signgate-pack-'));
	t.after(() => rm(directory, {recursive: true, force: true}));
	const {stdout} = await run('npm', ['pack', '--json', '--pack-destination', directory], {cwd: root});
	// Lifecycle scripts (prepack) may print before the JSON.
	const [packed] = JSON.parse(stdout.slice(stdout.indexOf('[')));
	assert.equal(packed.name, 'signgate');

	await run('tar', ['-xzf', join(directory, packed.filename), '-C', directory]);
	const files = (await readdir(join(directory, 'package'), {recursive: true})).sort();
	assert.deepEqual(files, ['LICENSE', 'README.md', 'index.d.ts', 'index.js', 'package.json']);
	const unpacked = path => readFile(join(directory, 'package', path));
	assert.deepEqual(await unpacked('README.md'), await read('js/README.md'), 'the README is the helper\'s, not the Python project\'s');
	assert.deepEqual(await unpacked('LICENSE'), await read('LICENSE'));
	assert.deepEqual(await unpacked('index.js'), await read('js/index.js'));
	assert.deepEqual(await unpacked('index.d.ts'), await read('js/index.d.ts'));

	const manifest = JSON.parse(await unpacked('package.json'));
	assert.equal(manifest.private, undefined, 'a private package cannot be published');
	assert.deepEqual(manifest.exports, {'.': {types: './index.d.ts', default: './index.js'}});
	assert.equal(manifest.license, 'MIT');
	assert.deepEqual(manifest.dependencies, undefined, 'the helper has no runtime dependencies');
});

test('js/LICENSE, packed as the package\'s, is the repository\'s LICENSE', async () => {
	assert.deepEqual(await read('js/LICENSE'), await read('LICENSE'));
});

// --offline: the dry run then checks the package without asking the registry whether this version
// is already published, which would fail this test for good once it is.
test('npm publish --dry-run accepts the package, without a login', {timeout: 120_000}, async () => {
	const {stdout, stderr} = await run('npm', ['publish', '--dry-run', '--offline'], {cwd: root});
	assert.match(stdout + stderr, /\+ signgate@\d+\.\d+\.\d+/);
	assert.match(stderr, /\(dry-run\)/);
});
