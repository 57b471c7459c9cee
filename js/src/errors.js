// The errors askJSON, askText and signedFetch throw: one tree, each with a stable `code`.
//
//   SigngateError
//   ├── SignEndpointError  sign_failed                  the app's sign endpoint failed
//   ├── GatewayError       <the gateway's code>         the gateway refused (x-signgate-error)
//   ├── UpstreamError      upstream_error               the model API answered with an error
//   ├── StreamError        stream_broken | sse_buffer_overflow
//   ├── OutputParseError   invalid_output               the answer is not JSON
//   ├── AbortError         aborted
//   └── TimeoutError       timeout
//
// The parsers stand apart (SSEParseError, JSONParseError): they know nothing of requests.
// A signed URL's query string holds its signature: no message, field or log line contains it,
// and no error keeps the Response (whose `url` has it).

export class SigngateError extends Error {
	name = 'SigngateError';

	constructor(message, {cause, ...fields} = {}) {
		super(message, cause && {cause});
		Object.assign(this, fields);
	}
}

// `status` is 0 when the endpoint could not be reached; `error` is its JSON {code, message}, if any.
export class SignEndpointError extends SigngateError {
	name = 'SignEndpointError';
	code = 'sign_failed';
}

// `code` is the gateway's own (expired, bad_signature, ...), or network_error when it was unreachable.
export class GatewayError extends SigngateError {
	name = 'GatewayError';
}

export class UpstreamError extends SigngateError {
	name = 'UpstreamError';
	code = 'upstream_error';
}

export class StreamError extends SigngateError {
	name = 'StreamError';

	// Not a field: a field would overwrite the sse_buffer_overflow code passed in.
	constructor(message, options) {
		super(message, {code: 'stream_broken', ...options});
	}
}

export class OutputParseError extends SigngateError {
	name = 'OutputParseError';
	code = 'invalid_output';
}

export class AbortError extends SigngateError {
	name = 'AbortError';
	code = 'aborted';
}

export class TimeoutError extends SigngateError {
	name = 'TimeoutError';
	code = 'timeout';
}
