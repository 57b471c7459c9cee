// The AI search box: an enhancement on top of the plain filter form, which works without it.
//
// Flow: ask the app to sign the request (POST /api/search/sign), send it to the gateway and
// stream the answer (askJSON does both), show the filters as they fill in, then go to
// /cars?... built from the answer. The answer is not trusted: /cars checks every value
// against the filter schema and lists what it ignored. We navigate straight away rather than
// stopping to let the user edit: the results page shows the understood filters as removable
// chips, and its form is prefilled with them, so editing is one click away there.

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

const LABELS = JSON.parse($('filter-labels').textContent);
const STORE = 'signgate-demo:last';
const TIMEOUT_MS = 60_000;
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
  timeout: () => 'The model took too long to answer. Try again, or use the filters below.',
  rate_limited: (e) => `Too many AI searches: ${e.message || 'wait a moment'}`,
};
const NETWORK_CODES = new Set(['network', 'network_error', 'fetch_failed', 'gateway_unreachable', 'unavailable']);

/** The message shown for an error from askJSON (or a plain fetch TypeError). */
export function describeError(err) {
  const code = err?.code;
  if (code && MESSAGES[code]) return MESSAGES[code](err);
  if (!code || NETWORK_CODES.has(code) || /failed to fetch|networkerror|load failed/i.test(err?.message ?? '')) {
    return UNAVAILABLE;
  }
  return `The AI search failed (${code}): ${err.message}`;
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

// `final`: the whole answer. A partial one may end inside a value ("Sunr"), which is not yet
// an option but will be: only a final answer's unknown values are marked as ignored.
function renderUnderstood(filters, query, final = true) {
  const items = [];
  for (const [name, value] of Object.entries(filters ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null || item === undefined || item === '') continue;
      const { text, known } = describeValue(name, item);
      const li = document.createElement('li');
      li.textContent = text;
      li.dataset.testid = 'understood-item';
      li.dataset.param = name;
      if (!known && final) {
        li.classList.add('dropped');
        li.title = 'Not one of the options: the search will ignore it';
      }
      items.push(li);
    }
  }
  if (items.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'no filters yet';
    li.dataset.testid = 'understood-empty';
    items.push(li);
  }
  understoodList.replaceChildren(...items);
  understoodQuery.textContent = query ? `You asked: “${query}”` : '';
  understood.hidden = false;
}

function summary() {
  return [...understoodList.children].map((li) => li.textContent).join(', ') || 'no filters';
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
  submit.disabled = busy;
  cancel.hidden = !busy;
  progress.hidden = !busy;
  section.setAttribute('aria-busy', String(busy));
}

function stop() {
  if (controller) controller.abort();
}

async function ask(askJSON, query) {
  controller = new AbortController();
  setBusy(true);
  showError('');
  setStatus('Signing the request…');
  understood.hidden = true;
  let received = 0;
  const signUrl = meta('sign-url');
  try {
    const answer = await askJSON(signUrl, { query }, {
      headers: { 'X-CSRF-Token': meta('csrf-token') },
      signal: controller.signal,
      timeout: TIMEOUT_MS,
      // askJSON fetches the signature, then the answer: say which of the two we wait for, so
      // that a slow model is not taken for a slow app.
      fetch: (url, init) => {
        setStatus(url === signUrl ? 'Signing the request…' : 'Waiting for the model…');
        return fetch(url, init);
      },
      onText: (delta) => {
        received += delta.length;
        setStatus(`Receiving the answer… (${received} characters)`);
      },
      onPartial: (partial) => {
        if (partial && typeof partial.filters === 'object') renderUnderstood(partial.filters, query, false);
      },
    });
    const filters = answer && typeof answer.filters === 'object' && !Array.isArray(answer.filters) ? answer.filters : null;
    if (!filters) {
      showError(MESSAGES.invalid_output(), 'invalid_output');
      setStatus('');
      return;
    }
    renderUnderstood(filters, query);
    const params = answerToParams(filters);
    sessionStorage.setItem(STORE, JSON.stringify({ query, filters, search: params.toString() }));
    setStatus(`Understood: ${summary()}. Loading the results…`);
    location.assign(`${form.dataset.results ?? '/cars'}?${params}`);
  } catch (err) {
    if (err?.code === 'aborted' || err?.name === 'AbortError') {
      setStatus('Search cancelled.');
    } else {
      setStatus('');
      showError(describeError(err), err?.code ?? 'unavailable');
    }
    input.focus();
  } finally {
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
    if (controller) return;
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
