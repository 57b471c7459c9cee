// The AI search box: an enhancement on top of the plain filter form, which works without it.
//
// Flow: ask the app to sign the request (POST /api/search/sign), send it to the gateway and
// stream the answer (askJSON does both), show the filters as they fill in, then go to
// /cars?... built from the answer. The answer is not trusted: /cars checks every value
// against the filter schema and lists what it ignored. We navigate straight away rather than
// stopping to let the user edit: the results page shows the understood filters as removable
// chips, and its form is prefilled with them, so editing is one click away there. An answer with
// nothing usable stays here instead, and says so: all 2,400 cars are no answer to a question.

import { createIdleTimer, createJSONTail, watchBody, withoutUnfinished } from './stream.js';

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';

const section = $('ask');
const form = $('ask-form');
const input = $('chat-input');
const submit = $('chat-submit');
const cancel = $('chat-cancel');
const progress = $('chat-progress');
const statusLine = $('chat-status');
const errorBox = $('chat-error');
const understood = $('understood');
const understoodQuery = $('understood-query');
const understoodList = $('understood-list');
const understoodNothing = $('understood-nothing');
const answeredBy = $('answered-by');
const counter = $('chat-count');
const cutNotice = $('chat-cut');
const retryLine = $('chat-retry');

const LABELS = JSON.parse($('filter-labels').textContent);
const STORE = 'signgate-demo:last';
const MAX_CHARS = Number(input.dataset.maxChars) || 300;
// Counted from the last byte received, not from the start: a slow model that keeps streaming is
// still answering.
const IDLE_MS = Number(meta('answer-idle-ms')) || 60_000;
const UNAVAILABLE = 'The AI search is unavailable; use the filters below.';
const REFUSED = 'The gateway refused the request because it no longer matches what the app signed. Try again.';

// One message per error code of askJSON and of the gateway.
const MESSAGES = {
  sign_failed: (e) => `The app could not sign the request: ${e.message || 'unknown error'}`,
  expired: () => 'The signed request expired before the gateway accepted it. Try again (and check that the clocks agree).',
  not_yet_valid: () => 'The gateway thinks the request comes from the future: the clocks disagree. Try again.',
  bad_signature: () => REFUSED,
  body_mismatch: () => REFUSED,
  missing_header: () => REFUSED,
  malformed: () => REFUSED,
  unknown_key: () => "The gateway does not know this app's signing key; check the demo's configuration.",
  upstream_error: () => 'The model service returned an error. Try again, or use the filters below.',
  stream_broken: () => 'The answer was cut off before it was complete. Try again, or use the filters below.',
  invalid_output: () => "The model's answer was not a valid set of filters. Try rephrasing, or use the filters below.",
  timeout: () =>
    `The model sent nothing for ${Math.round(IDLE_MS / 1000)} s, so the search stopped. Try again, or use the filters below.`,
  rate_limited: (e) => `Too many AI searches: ${e.message || 'wait a moment'}`,
};
const EXAMPLE = '“a red SUV under $25,000 with a sunroof”';
const NETWORK_CODES = new Set(['network', 'network_error', 'fetch_failed', 'gateway_unreachable', 'unavailable']);

/** The message shown for an error from askJSON (or a plain fetch TypeError). */
export function describeError(err) {
  const code = err?.code;
  if (isRateLimited(err)) return `Too many AI searches: ${sentence(err.error?.message) || 'wait a minute'}`;
  if (code && MESSAGES[code]) return MESSAGES[code](err);
  if (!code || NETWORK_CODES.has(code) || /failed to fetch|networkerror|load failed/i.test(err?.message ?? '')) {
    return UNAVAILABLE;
  }
  return `The AI search failed (${code}): ${err.message}`;
}

/** The app's sign endpoint answered 429: its own message and Retry-After come with the error. */
function isRateLimited(err) {
  return err?.code === 'sign_failed' && err.status === 429;
}

function sentence(text) {
  if (typeof text !== 'string' || !text) return '';
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

function scalar(value) {
  // Mirrors demo/filters.py `_scalar`: how one answer value goes into the URL.
  if (value === null || value === undefined) return null;
  if (['string', 'number', 'boolean'].includes(typeof value)) return String(value);
  return JSON.stringify(value);
}

/** The /cars query string for an answer's filters. Nothing is dropped here: /cars decides. */
export function answerToParams(filters) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      const text = scalar(item);
      if (text) params.append(name, text);
    }
  }
  return params;
}

function describeValue(name, value) {
  // Mirrors Param.chip in demo/filters.py; marks what /cars is going to ignore.
  const spec = LABELS[name];
  if (!spec) return { text: `${name}: ${scalar(value)}`, known: false };
  if (spec.kind === 'number') {
    const number = typeof value === 'number' ? value : Number(value);
    // Like Param.show: thousands separators for amounts ($, mi) only; "Year ≥ 2018", not "2,018".
    let shown = Number.isFinite(number) && spec.unit ? number.toLocaleString('en-US') : String(value);
    if (spec.unit === '$') shown = `$${shown}`;
    else if (spec.unit) shown = `${shown} ${spec.unit}`;
    const op = name.endsWith('_min') ? ' ≥ ' : name.endsWith('_max') ? ' ≤ ' : ': ';
    return { text: `${spec.label}${op}${shown}`, known: Number.isInteger(number) };
  }
  const options = spec.options ?? {};
  const key = Object.keys(options).find((o) => o.toLowerCase() === String(value).toLowerCase());
  return { text: `${spec.label}: ${key === undefined ? scalar(value) : options[key]}`, known: key !== undefined };
}

// `final`: the whole answer. A partial one never shows a value that is still arriving (see
// withoutUnfinished), and only a final answer's unknown values are marked as ignored.
// Returns how many values the search can use.
function renderUnderstood(filters, query, final = true) {
  const items = [];
  let usable = 0;
  for (const [name, value] of Object.entries(filters ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null || item === undefined || item === '') continue;
      const { text, known } = describeValue(name, item);
      const li = document.createElement('li');
      li.textContent = text;
      li.dataset.testid = 'understood-item';
      li.dataset.param = name;
      if (known) usable += 1;
      if (!known && final) {
        li.classList.add('dropped');
        li.title = 'Not one of the options: the search will ignore it';
      }
      items.push(li);
    }
  }
  if (items.length === 0 && !final) {
    const li = document.createElement('li');
    li.textContent = 'no filters yet';
    li.dataset.testid = 'understood-empty';
    items.push(li);
  }
  understoodList.replaceChildren(...items);
  understoodList.hidden = items.length === 0;
  understoodQuery.textContent = query ? `You asked: “${query}”` : '';
  understoodNothing.hidden = true;
  understood.hidden = false;
  return usable;
}

function showNothingUnderstood(query) {
  understoodNothing.textContent =
    `I could not pick out any filters from “${query}”: try naming a body style, a make, a colour, ` +
    `a price or a year, e.g. ${EXAMPLE}. The filters below work too.`;
  understoodNothing.hidden = false;
}

function showAnsweredBy(model) {
  answeredBy.textContent = model ? `Answered by ${model}` : '';
  answeredBy.hidden = !model;
}

function summary() {
  return [...understoodList.children].map((li) => li.textContent).join(', ') || 'no filters';
}

/** Cut the question to MAX_CHARS characters (code points, as the app counts) and say so. */
function countChars() {
  const chars = [...input.value];
  if (chars.length > MAX_CHARS) {
    const cut = chars.length - MAX_CHARS;
    input.value = chars.slice(0, MAX_CHARS).join('');
    cutNotice.textContent = `Your text was cut to ${MAX_CHARS} characters: the last ${cut} were left out.`;
    cutNotice.hidden = false;
  } else if (chars.length < MAX_CHARS) {
    cutNotice.hidden = true;
  }
  counter.textContent = `${Math.min(chars.length, MAX_CHARS)} / ${MAX_CHARS} characters`;
}

let retryTimer = null;

/** Count down the seconds until the app takes another search, with Search off until then. */
function waitToRetry(seconds) {
  clearInterval(retryTimer);
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left > 0) {
      retryLine.textContent = `You can search again in ${left} s.`;
      retryLine.dataset.secondsLeft = String(left);
      submit.disabled = true;
      return;
    }
    clearInterval(retryTimer);
    retryLine.textContent = 'You can search again now.';
    retryLine.dataset.secondsLeft = '0';
    submit.disabled = controller !== null;
  };
  retryLine.hidden = false;
  tick();
  retryTimer = setInterval(tick, 1000);
}

function setStatus(text) {
  statusLine.textContent = text;
}

function showError(text, code = '') {
  errorBox.textContent = text;
  errorBox.dataset.code = code;
  errorBox.hidden = !text;
}

let controller = null;

function setBusy(busy) {
  submit.disabled = busy || retryLine.dataset.secondsLeft > 0;
  cancel.hidden = !busy;
  progress.hidden = !busy;
  section.setAttribute('aria-busy', String(busy));
}

function stop() {
  if (controller) controller.abort();
}

async function ask(askJSON, query) {
  controller = new AbortController();
  const search = controller;
  let idleTimedOut = false;
  const idle = createIdleTimer(IDLE_MS, () => {
    idleTimedOut = true;
    search.abort();
  });
  const tail = createJSONTail();
  let model = '';
  let stopWatching = () => {};
  setBusy(true);
  showError('');
  setStatus('Signing the request…');
  understood.hidden = true;
  showAnsweredBy('');
  let received = 0;
  const signUrl = meta('sign-url');
  idle.reset();
  try {
    const answer = await askJSON(signUrl, { query }, {
      headers: { 'X-CSRF-Token': meta('csrf-token') },
      signal: search.signal,
      // askJSON fetches the signature, then the answer: say which of the two we wait for, so
      // that a slow model is not taken for a slow app. The answer's body is read twice (tee):
      // once by askJSON, once here, to time the silence between bytes and to learn the model.
      fetch: async (url, init) => {
        const toGateway = url !== signUrl;
        setStatus(toGateway ? 'Waiting for the model…' : 'Signing the request…');
        idle.reset();
        const response = await fetch(url, init);
        idle.reset();
        if (!toGateway || !response.ok || !response.body) return response;
        const [mine, theirs] = response.body.tee();
        stopWatching();
        stopWatching = watchBody(mine, {
          onBytes: () => idle.reset(),
          onModel: (name) => {
            model = name;
          },
        });
        return new Response(theirs, { status: response.status, statusText: response.statusText, headers: response.headers });
      },
      onText: (delta) => {
        received += delta.length;
        tail.feed(delta);
        setStatus(`Receiving the answer… (${received} characters)`);
      },
      onPartial: (partial) => {
        if (partial && typeof partial.filters === 'object') {
          renderUnderstood(withoutUnfinished(partial.filters, tail), query, false);
        }
      },
    });
    const filters = answer && typeof answer.filters === 'object' && !Array.isArray(answer.filters) ? answer.filters : null;
    if (!filters) {
      showError(MESSAGES.invalid_output(), 'invalid_output');
      setStatus('');
      return;
    }
    showAnsweredBy(model);
    if (renderUnderstood(filters, query) === 0) {
      showNothingUnderstood(query);
      setStatus('');
      input.focus();
      return;
    }
    const params = answerToParams(filters);
    sessionStorage.setItem(STORE, JSON.stringify({ query, filters, model, search: params.toString(), fresh: true }));
    setStatus(`Understood: ${summary()}. Loading the results…`);
    location.assign(`${form.dataset.results ?? '/cars'}?${params}`);
  } catch (err) {
    if (idleTimedOut) {
      setStatus('');
      showError(MESSAGES.timeout(), 'timeout');
    } else if (err?.code === 'aborted' || err?.name === 'AbortError') {
      setStatus('Search cancelled.');
    } else {
      setStatus('');
      showError(describeError(err), isRateLimited(err) ? 'rate_limited' : (err?.code ?? 'unavailable'));
      if (isRateLimited(err) && err.retryAfter > 0) waitToRetry(err.retryAfter);
    }
    input.focus();
  } finally {
    idle.stop();
    stopWatching();
    controller = null;
    setBusy(false);
  }
}

function restoreLastSearch() {
  // After navigating, show what was asked and understood, if this page is that search.
  let last = null;
  try {
    last = JSON.parse(sessionStorage.getItem(STORE) ?? 'null');
  } catch {
    return;
  }
  if (!last || last.search !== location.search.replace(/^\?/, '')) return;
  input.value = last.query ?? '';
  renderUnderstood(last.filters, last.query);
  showAnsweredBy(last.model);
  if (last.fresh) {
    // The results of the search just made: start keyboard users there, once.
    sessionStorage.setItem(STORE, JSON.stringify({ ...last, fresh: false }));
    $('results-title')?.focus();
  }
}

async function main() {
  const filterForm = document.querySelector('form[data-testid="filter-form"]');
  form.dataset.results = filterForm?.getAttribute('action') ?? '/cars';
  // Untouched fields would otherwise fill the URL with "make=&model=&...".
  filterForm?.addEventListener('formdata', (event) => {
    for (const [name, value] of [...event.formData]) {
      if (value === '') event.formData.delete(name);
    }
  });
  restoreLastSearch();
  countChars();
  input.addEventListener('input', countChars);
  let askJSON;
  try {
    ({ askJSON } = await import(meta('signgate-js')));
  } catch {
    showError(`${UNAVAILABLE} (The browser helper did not load.)`, 'helper_missing');
    submit.disabled = true;
    section.hidden = false;
    return;
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (controller || retryLine.dataset.secondsLeft > 0) return;
    const query = input.value.trim();
    if (!query) {
      showError('Describe the car you want first, e.g. “a blue hatchback under $15,000”.', 'empty_query');
      input.focus();
      return;
    }
    ask(askJSON, query);
  });
  cancel.addEventListener('click', stop);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && controller) {
      event.preventDefault();
      stop();
    }
  });
  // Shown only now: a question sent before the submit handler exists would reload the page
  // with ?query=... and be lost.
  section.hidden = false;
}

main();
