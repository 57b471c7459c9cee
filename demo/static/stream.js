// What the page needs to know about an answer while it streams, beyond what askJSON gives it:
// when the last byte came (to give up on silence, not on a slow model that keeps sending), which
// model answered, and whether the JSON so far stops inside a string value.

/**
 * A timer that calls `onIdle` once `ms` pass without a `reset()`; `stop()` ends it for good.
 */
export function createIdleTimer(ms, onIdle) {
  let timer = null;
  let stopped = false;
  return {
    reset() {
      if (stopped) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        stopped = true;
        onIdle();
      }, ms);
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// An answer's first `"model": "..."` names the model that gave it, in every API's answer and
// stream alike (Gemini's says `"modelVersion"`). Inside the answer's own text a quote is escaped
// (\"model\"), so that cannot match. Only the start of the body is searched.
const MODEL = /"model(?:Version)?"\s*:\s*"((?:[^"\\\n]|\\.){1,200})"/;
const SNIFF_CHARS = 64 * 1024;

/**
 * Reads `body` (a ReadableStream branch of its own) to the end: `onBytes()` for every chunk and
 * `onModel(name)` once the answer names its model. Returns `stop()`, which cancels the reading.
 */
export function watchBody(body, { onBytes, onModel }) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let head = '';
  let named = false;
  (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      onBytes();
      if (named || head.length > SNIFF_CHARS) continue;
      head += decoder.decode(value, { stream: true });
      const match = MODEL.exec(head);
      if (match) {
        named = true;
        try {
          onModel(JSON.parse(`"${match[1]}"`));
        } catch {
          // Not a JSON string after all: say nothing rather than something wrong.
        }
      }
    }
  })().catch(() => {
    // Aborted or broken: askJSON reads the other branch and reports that.
  });
  return () => reader.cancel().catch(() => {});
}

/**
 * Follows JSON text as it arrives and tells whether it stops inside a string value (not a key).
 * The incremental parser shows such a value as far as it has come ("Body: s"); a chip waits
 * until the value is whole.
 */
export function createJSONTail() {
  const open = []; // '{' or '[' of each open container
  let inString = false;
  let escaped = false;
  let isKey = false;
  let last = ''; // the last character outside strings that is not white space
  return {
    feed(text) {
      for (const char of text) {
        if (inString) {
          if (escaped) escaped = false;
          else if (char === '\\') escaped = true;
          else if (char === '"') {
            inString = false;
            last = '"';
          }
          continue;
        }
        if (char === '"') {
          inString = true;
          isKey = open.at(-1) === '{' && (last === '{' || last === ',');
        } else if (char === '{' || char === '[') {
          open.push(char);
        } else if (char === '}' || char === ']') {
          open.pop();
        }
        if (!' \t\n\r'.includes(char)) last = char;
      }
    },
    get inValue() {
      return inString && !isKey;
    },
  };
}

/**
 * `filters` without its last value (in document order) when that value is still arriving: the
 * last property's value, or the last element of it when it is a list.
 */
export function withoutUnfinished(filters, tail) {
  if (!tail.inValue || !filters || typeof filters !== 'object') return filters;
  const names = Object.keys(filters);
  const name = names.at(-1);
  if (name === undefined) return filters;
  const copy = { ...filters };
  if (Array.isArray(copy[name])) copy[name] = copy[name].slice(0, -1);
  else delete copy[name];
  return copy;
}
