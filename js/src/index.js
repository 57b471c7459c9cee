// signgate's browser helper: ask the app's backend for a signed request, send it to the gateway,
// read the model's (streamed) answer and return the JSON it wrote.
export {askJSON, askText} from './ask.js';
export {
	AbortError,
	GatewayError,
	OutputParseError,
	SignEndpointError,
	SigngateError,
	StreamError,
	TimeoutError,
	UpstreamError,
} from './errors.js';
export {signedFetch} from './fetch.js';
export {createJSONParser, JSONParseError} from './json.js';
export {createSSEParser, SSEParseError} from './sse.js';
