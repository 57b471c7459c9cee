// Type tests: `tsc -p js` must accept every line; each @ts-expect-error must be a real error.
// The import goes through the package's own name, so package.json's `exports.types` is checked too.
import {
	AbortError,
	type AnswerFormat,
	askJSON,
	askText,
	createJSONParser,
	createSSEParser,
	GatewayError,
	type GatewayErrorCode,
	JSONParseError,
	OutputParseError,
	type PartialJSON,
	type SignedRequest,
	SignEndpointError,
	signedFetch,
	SigngateError,
	SSEParseError,
	StreamError,
	TimeoutError,
	UpstreamError,
} from 'signgate';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <T extends true>(): T | undefined => undefined;

type Recipe = {title: string; steps: string[]; servings: number; meta: {tags: string[]}};

// askJSON returns the type asked for; onPartial sees a deep partial of it.
const recipe = await askJSON<Recipe>('/api/sign', {dish: 'pancakes'}, {
	onText(delta) {
		expectType<Equal<typeof delta, string>>();
	},
	onPartial(partial) {
		expectType<Equal<typeof partial.title, string | undefined>>();
		expectType<Equal<typeof partial.meta, {tags?: string[]} | undefined>>();
	},
	headers: {'x-csrf-token': 'token'},
	credentials: 'include',
	signal: AbortSignal.timeout(1000),
	timeout: 30_000,
	fetch: globalThis.fetch,
});
expectType<Equal<typeof recipe, Recipe>>();
expectType<Equal<Awaited<ReturnType<typeof askJSON>>, unknown>>();
expectType<Equal<PartialJSON<string[]>, string[]>>();

const response = await signedFetch(new URL('https://app.example/api/sign'), undefined);
expectType<Equal<typeof response, Response>>();
const revoked: GatewayErrorCode = 'revoked';
const newer: GatewayErrorCode = 'a_code_of_a_newer_gateway';
// @ts-expect-error: a code is a string
const notACode: GatewayErrorCode = 401;
// @ts-expect-error: the sign endpoint is a URL
await signedFetch(42, {});
// @ts-expect-error: credentials takes RequestCredentials
await signedFetch('/api/sign', {}, {credentials: 'always'});
// @ts-expect-error: askJSON has no such option
await askJSON('/api/sign', {}, {onDelta() {}});

// The API can be named; only the known ones.
await askJSON('/api/sign', {}, {format: 'responses'});
const format: AnswerFormat = 'gemini';
// @ts-expect-error: not a format askJSON reads
await askJSON('/api/sign', {}, {format: 'openai'});

// askText resolves with a string; it has no onPartial.
const text = await askText('/api/sign', {}, {format, onText: delta => delta.length, timeout: 1000});
expectType<Equal<typeof text, string>>();
// @ts-expect-error: askText has no onPartial
await askText('/api/sign', {}, {onPartial() {}});

const signed: SignedRequest = {url: 'https://gw.example/v1/x', method: 'POST', headers: {}, body: null};
expectType<Equal<typeof signed.body, string | null>>();

// Every error is a SigngateError with a code; the subclasses narrow it.
const error: unknown = new Error('x');
if (error instanceof SigngateError) {
	expectType<Equal<typeof error.code, string>>();
}

if (error instanceof SignEndpointError) {
	expectType<Equal<typeof error.code, 'sign_failed'>>();
	expectType<Equal<typeof error.status, number>>();
	expectType<Equal<typeof error.retryAfter, number | undefined>>();
	expectType<Equal<typeof error.error, {code: string; message?: string; [key: string]: unknown} | undefined>>();
	if (error.error) {
		expectType<Equal<typeof error.error.code, string>>();
		expectType<Equal<typeof error.error.message, string | undefined>>();
	}
}

if (error instanceof GatewayError) {
	expectType<Equal<typeof error.code, GatewayErrorCode>>();
	expectType<Equal<typeof error.status, number>>();
	expectType<Equal<typeof error.retryAfter, number | undefined>>();
}

if (error instanceof UpstreamError) {
	expectType<Equal<typeof error.code, 'upstream_error'>>();
	expectType<Equal<typeof error.error, unknown>>();
}

if (error instanceof StreamError) {
	expectType<Equal<typeof error.code, 'stream_broken' | 'sse_buffer_overflow'>>();
}

if (error instanceof OutputParseError) {
	expectType<Equal<typeof error.text, string>>();
}

if (error instanceof AbortError || error instanceof TimeoutError) {
	expectType<Equal<typeof error.code, 'aborted' | 'timeout'>>();
	expectType<Equal<typeof error, AbortError | TimeoutError>>();
}

const sse = createSSEParser({
	onEvent(event) {
		expectType<Equal<typeof event.data, string>>();
		expectType<Equal<typeof event.event, string | undefined>>();
	},
	onComment(comment) {
		expectType<Equal<typeof comment, string>>();
	},
	maxBufferSize: 1024,
});
sse.feed('data: x\n\n');
sse.feed(new Uint8Array([10]));
sse.reset();
// @ts-expect-error: onEvent is required
createSSEParser({});

const json = createJSONParser();
expectType<Equal<ReturnType<typeof json.feed>, boolean>>();
expectType<Equal<typeof json.done, boolean>>();
expectType<Equal<ReturnType<typeof json.end>, unknown>>();
// @ts-expect-error: value is read-only
json.value = 1;

const parseError: unknown = new Error('x');
if (parseError instanceof JSONParseError) {
	expectType<Equal<typeof parseError.position, number>>();
	expectType<Equal<typeof parseError.type, 'unexpected_character' | 'invalid_number' | 'unexpected_end'>>();
	const asSyntaxError: SyntaxError = parseError;
}

if (parseError instanceof SSEParseError) {
	expectType<Equal<typeof parseError.type, 'buffer_overflow'>>();
	// @ts-expect-error: a parser's error is not one of the client's
	const asClientError: SigngateError = parseError;
}
