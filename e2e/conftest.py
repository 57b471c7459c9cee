"""The end-to-end suite: Chromium, headless, against the real demo on loopback.

* ``stack`` (module scope) runs ``python -m demo`` on free ports with a throwaway instance
  folder and secrets chosen here; a module that needs another setup overrides it, using
  :func:`running`. A failing test's report carries what the servers printed while it ran.
* Every browser context opened through the fixtures (``page``, ``context``, ``new_context``,
  ``new_page``) is recorded (:mod:`e2e.traffic`) and checked when the test ends: no secret of
  a running stack anywhere the browser could see it, every event stream read, every page
  recorded, no uncaught script error. A test cannot skip it short of calling
  ``browser.new_context`` itself, which only the recorder's own test does.
* ``shoot(page, name)`` keeps a screenshot of a key state (and snapshots the page for the check).

Run with ``make e2e`` (or ``.venv/bin/pytest e2e``). It uses Debian's Chromium, as
``playwright install`` cannot download browsers on every machine this runs on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from demo import catalog
from playwright.sync_api import BrowserContext, Page, expect

from .stack import Stack, StackError
from .traffic import Traffic

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # Root in a container: Chromium's sandbox needs user namespaces it may not have.
    "--no-sandbox",
    "--disable-gpu",
    # Chromium's own calls home would be refused on a closed network and slow every start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Stacks running now, newest last: their secrets are what the traffic check looks for.
RUNNING: list[Stack] = []
_LOG_MARKS = pytest.StashKey[dict[str, int]]()


def pytest_configure(config: pytest.Config) -> None:
    if not CHROMIUM.exists():
        raise pytest.UsageError(f"{CHROMIUM} is missing; install it with: scripts/ensure-debian-packages.sh chromium")
    # Streaming an answer and loading the results takes a few seconds on a busy machine.
    expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def base_url() -> None:
    """No base URL: each stack has its own ports. (Defined here because pytest-playwright's
    fallback for it is an instance-method session fixture, which pytest 9 deprecates, and
    warnings are errors in this project.)"""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


# -- the demo ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalog every stack of the run serves (built once; the app only reads it)."""
    path = tmp_path_factory.mktemp("instance") / "catalog.sqlite3"
    catalog.ensure_catalog(path)
    return path


@pytest.fixture(scope="session")
def db(catalog_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to that catalog, for checking results with SQL written in the tests."""
    with closing(sqlite3.connect(f"{catalog_path.as_uri()}?mode=ro", uri=True)) as conn:
        yield conn


@pytest.fixture(scope="session")
def log_dir(pytestconfig: pytest.Config) -> Path:
    """Where each stack's whole output is written (the artifacts folder)."""
    path = Path(pytestconfig.getoption("--output")).absolute() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def running(make: Callable[[], Stack], expected_exit: tuple[int, ...] = (0,)) -> Iterator[Stack]:
    """Start the stack ``make()`` builds, yield it, then stop it and check that it stopped
    cleanly and never printed a secret. Picks new ports if one was taken in the meantime."""
    for attempt in range(3):
        stack = make()
        try:
            stack.start()
            break
        except StackError:
            if attempt == 2 or not stack.port_was_taken():
                raise
    RUNNING.append(stack)
    try:
        yield stack
    finally:
        RUNNING.remove(stack)
        code = stack.stop()
        output = stack.log()
        printed = [name for name, value in stack.secrets.items() if value in output]
        assert not printed, f"{stack.name} printed its {', '.join(printed)}"
        assert code in expected_exit, f"{stack.name} exited with code {code}; its output:\n{output}"


@pytest.fixture(scope="module")
def stack(catalog_path: Path, log_dir: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The demo as ``make demo`` runs it, one per test module."""
    name = request.module.__name__.rpartition(".")[2]
    with running(lambda: Stack.demo(name, catalog_path.parent, log_dir=log_dir)) as started:
        yield started


@pytest.fixture(autouse=True)
def _mark_logs(request: pytest.FixtureRequest) -> None:
    request.node.stash[_LOG_MARKS] = {stack.name: stack.mark() for stack in RUNNING}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        marks = item.stash.get(_LOG_MARKS, {})
        for stack in RUNNING:
            output = stack.log(marks.get(stack.name, 0)) or "(nothing)"
            report.sections.append((f"{stack.name}: what the servers printed during this test", output))
    return report


# -- the browser, recorded -------------------------------------------------------------------


class Recorders:
    """The :class:`Traffic` of each browser context a test opened."""

    def __init__(self) -> None:
        self.contexts: list[tuple[BrowserContext, Traffic]] = []

    def of(self, page: Page) -> Traffic:
        return next(traffic for context, traffic in self.contexts if context is page.context)


@pytest.fixture
def recorders() -> Recorders:
    return Recorders()


@pytest.fixture
def new_context(
    new_context: Callable[..., BrowserContext], recorders: Recorders, output_path: str
) -> Iterator[Callable[..., BrowserContext]]:
    """pytest-playwright's ``new_context``, every context recorded and checked at the end."""

    def make(**kwargs: Any) -> BrowserContext:
        har = Path(output_path) / f"traffic-{len(recorders.contexts) + 1}.har"
        context = new_context(record_har_path=har, record_har_content="embed", **kwargs)
        traffic = Traffic(har)
        traffic.watch(context)
        recorders.contexts.append((context, traffic))
        return context

    yield make
    secrets = {f"{stack.name} {name}": value for stack in RUNNING for name, value in stack.secrets.items()}
    problems = []
    for context, traffic in recorders.contexts:
        traffic.finish(context)
        if not traffic.entries:
            problems.append("a browser context recorded no traffic at all; the check would prove nothing")
        problems += traffic.leaks(secrets)
        problems += [f"an event stream's body was not read: {why}" for why in traffic.unread_streams()]
        problems += [f"uncaught script error: {error}" for error in traffic.page_errors]
        problems += [
            f"a page was not recorded (open pages with the page or new_page fixture): {url}"
            for url in traffic.unrecorded_pages
        ]
    if problems:
        pytest.fail("the traffic check failed:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def page(context: BrowserContext, recorders: Recorders) -> Page:
    page = context.new_page()
    recorders.of(page).attach(page)
    return page


@pytest.fixture
def new_page(new_context: Callable[..., BrowserContext], recorders: Recorders) -> Callable[..., Page]:
    """``new_page(**context_options)``: a page in a context of its own (``java_script_enabled=False``,
    say), recorded and checked like ``page``."""

    def make(**kwargs: Any) -> Page:
        page = new_context(**kwargs).new_page()
        recorders.of(page).attach(page)
        return page

    return make


@pytest.fixture
def shoot(output_path: str, recorders: Recorders) -> Callable[[Page, str], None]:
    """``shoot(page, name)``: a full-page screenshot of a key state, kept in the test's artifacts
    folder (numbered in the order taken), and a snapshot of the page for the traffic check."""
    taken: list[str] = []

    def take(page: Page, name: str) -> None:
        taken.append(name)
        folder = Path(output_path)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{len(taken):02d}-{name}.png", full_page=True)
        recorders.of(page).snapshot(page, name)

    return take
