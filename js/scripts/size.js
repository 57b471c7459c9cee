// Prints the shipped file's size minified and gzipped, and fails past the budget: the helper
// loads on every page that asks the model something, so it has to stay small.
import {readFile} from 'node:fs/promises';
import {gzipSync} from 'node:zlib';
import {transform} from 'esbuild';

// 4 KiB held the helper when it read Chat Completions only (3,184 B). Reading four APIs, with tool
// calls, askText and typed parse and sign errors, measured 4,697 B: the Responses, Anthropic and
// Gemini decoders cost 257, 183 and 153 B each (the bundle built without each one), the rest is
// the other features. 5 KiB leaves about 420 B: room for one more API, not for a second library.
const BUDGET = 5120;
const file = new URL('../index.js', import.meta.url);
const source = await readFile(file, 'utf8');
const {code} = await transform(source, {minify: true, format: 'esm', target: 'es2022'});
const gzipped = gzipSync(code, {level: 9}).length;
console.log(`js/index.js: ${source.length} B source, ${code.length} B minified, ${gzipped} B minified+gzipped (budget ${BUDGET} B)`);
if (gzipped > BUDGET) {
	console.error(`js/index.js is ${gzipped - BUDGET} B over the ${BUDGET} B budget`);
	process.exitCode = 1;
}
