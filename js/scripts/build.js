// Builds js/index.js, the one module the package ships (and the demo serves), from the modules in
// js/src/. esbuild joins them into one, renaming where two use the same private name; unminified,
// so that the shipped file still reads like the source. `--check` fails, without writing, when
// js/index.js is not what the sources build (js/test/build.test.js checks the same in `npm test`).
import {readFile, writeFile} from 'node:fs/promises';
import {fileURLToPath} from 'node:url';
import {build as esbuild} from 'esbuild';

export const shipped = new URL('../index.js', import.meta.url);
const root = fileURLToPath(new URL('../..', import.meta.url));

/** The text of js/index.js as the sources in js/src/ make it. */
export const build = async () => {
	const {outputFiles} = await esbuild({
		absWorkingDir: root,
		entryPoints: ['js/src/index.js'],
		bundle: true,
		format: 'esm',
		platform: 'neutral',
		target: 'es2022',
		charset: 'utf8',
		write: false,
		outfile: 'js/index.js',
		banner: {js: '// Built from js/src/ by js/scripts/build.js (`npm run build`): edit those, not this file.'},
	});
	return outputFiles[0].text;
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const text = await build();
	if (!process.argv.includes('--check')) {
		await writeFile(shipped, text);
	} else if (text !== await readFile(shipped, 'utf8').catch(() => '')) {
		console.error('js/index.js is not what js/src/ builds: run `npm run build` and commit the result');
		process.exitCode = 1;
	}
}
