"""A real browser: JupyterLab runs notebook 02 in headless Chromium and its mask explorer reacts.

The one test here starts ``jupyter-lab`` on loopback with this interpreter's kernel, serving a
temporary copy of ``notebooks/02_orders_and_masks.ipynb`` (autosave must never touch the committed
file), lets Playwright drive Debian's ``/usr/bin/chromium`` (never Playwright's own browser
download) to run all cells, waits for the ``mask_explorer()`` widget to render, moves its first
slider with the keyboard and checks that the figure (the ``ipywidgets.Image``) changed.

It is marked ``browser``: deselect it with ``-m "not browser"``. It skips, saying why, when
Chromium, the ``playwright`` package or JupyterLab is missing. On failure it saves a screenshot and
the server log in the test's ``tmp_path`` and names them in the message.
"""
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_orders_and_masks.ipynb"
WIDGET_CALL = "mask_explorer("  # the explorer is the output of the last code cell containing this

# Flags that keep Chromium from stalling on a closed network (PLAYBOOK A, "A real browser").
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Generous limits (2 shared cores); a normal run takes well under a minute in all.
SERVER_START_S = 120   # jupyter-lab answers /api/status
PAGE_S = 120           # JupyterLab loaded, notebook open, kernel idle
RUN_ALL_S = 300        # every cell of the notebook executed
WIDGET_S = 60          # the explorer rendered; the figure updated after the slider moved


def _chromium():
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def _jupyter_lab():
    """The ``jupyter-lab`` script of this interpreter's environment (not the ``jupyter`` dispatcher)."""
    here = Path(sys.executable).parent / "jupyter-lab"
    return str(here) if here.exists() else shutil.which("jupyter-lab")


def _requirements():
    """Skip, naming what is missing, unless Chromium, Playwright and JupyterLab are all here."""
    if _chromium() is None:
        pytest.skip("no Chromium: /usr/bin/chromium is absent and `chromium` is not on PATH "
                    "(Debian: apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the `playwright` Python package is not importable ({exc})")
    for module in ("jupyterlab", "ipykernel", "ipywidgets"):
        try:
            __import__(module)
        except ImportError as exc:
            pytest.skip(f"JupyterLab is not installed: cannot import {module} ({exc})")
    if _jupyter_lab() is None:
        pytest.skip(f"JupyterLab is not installed: no `jupyter-lab` script next to {sys.executable}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, token, path, method="GET", timeout=5):
    req = urllib.request.Request(f"{base}{path}", method=method,
                                 headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return json.loads(body) if body else None


def _tail(path, n=3000):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _pids_mentioning(text):
    """PIDs whose command line contains ``text`` (our kernels name our runtime folder)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _stop_server(proc, base, token, runtime):
    """Shut kernels down, terminate jupyter-lab's process group, then kill any straggler."""
    # Kernels run in their own sessions (jupyter_client's start_new_session): ask the server first.
    with contextlib.suppress(Exception):
        for kernel in _api(base, token, "/api/kernels"):
            _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE", timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for pid in _pids_mentioning(str(runtime)):  # a kernel the server could not stop
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab on loopback serving a temporary copy of the notebook; stopped whatever happens."""
    _requirements()
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK.relative_to(REPO)} does not exist")
    with tempfile.TemporaryDirectory(prefix="minarmd-browser-") as tmp:
        tmp = Path(tmp)
        root, runtime = tmp / "root", tmp / "runtime"
        for d in (root, runtime):
            d.mkdir()
        shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)
        # The notebook's `python3` kernel is this interpreter, whatever other kernelspecs exist.
        spec = tmp / "data" / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        # Fresh user settings: no news or update checks (closed network, no toasts).
        settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = dict(os.environ, JUPYTER_PATH=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(runtime),
                   JUPYTER_CONFIG_DIR=str(tmp / "config"),
                   JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
        port, token = _free_port(), secrets.token_hex(16)
        base = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "jupyter-lab.log"
        cmd = [_jupyter_lab(), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.token={token}", "--allow-root",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter-lab exited with code {proc.returncode} before answering;"
                                f" log {log_path}:\n{_tail(log_path)}")
                with contextlib.suppress(OSError, ValueError):
                    _api(base, token, "/api/status", timeout=2)
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter-lab did not answer on {base} within {SERVER_START_S} s;"
                                f" log {log_path}:\n{_tail(log_path)}")
                time.sleep(0.5)
            yield dict(base=base, token=token, notebook=NOTEBOOK.name, log=log_path,
                       profile=tmp / "chromium-profile")
        finally:
            _stop_server(proc, base, token, runtime)


# JavaScript run in the page (JupyterLab exposes its app as window.jupyterapp with the flag above).
_NOTEBOOK_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(w && w.content && w.context && w.context.isReady && k && k.status === 'idle');
}"""
_RUN_ALL = """() => {
  window.__runAll = {done: false};
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    ok => { window.__runAll = {done: true, ok: ok !== false}; },
    err => { window.__runAll = {done: true, ok: false, error: String(err)}; });
}"""
_CELLS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cells = [];
  for (let i = 0; i < nb.widgets.length; i++) {
    const m = nb.widgets[i].model;
    if (m.type !== 'code') continue;
    const errors = m.outputs.toJSON().filter(o => o.output_type === 'error')
      .map(o => `${o.ename}: ${o.evalue}`);
    cells.push({index: i, count: m.executionCount, source: m.sharedModel.getSource(), errors});
  }
  return cells;
}"""
_TAG_CELL = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  nb.activeCellIndex = i;
  nb.widgets[i].node.setAttribute('data-browser-test', 'explorer');
}"""
_IMAGE_DIGEST = """async (img) => {
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('');
}"""


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mask_explorer_slider_changes_the_figure(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    committed = _digest(NOTEBOOK)
    started = time.monotonic()
    console = []  # browser errors, for the failure message
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(lab["profile"]), executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WIDGET_S * 1000)
            page.on("console", lambda m: m.type == "error" and console.append(m.text))
            page.on("pageerror", lambda e: console.append(str(e)))
            try:
                _drive(page, lab)
            except Exception as exc:
                shot = tmp_path / "failure.png"
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(
                    f"{exc}\n-- after {time.monotonic() - started:.0f} s; screenshot: {shot};"
                    f" server log: {lab['log']}\n-- browser errors (last 10): {console[-10:]}\n"
                    f"-- server log tail:\n{_tail(lab['log'], 1500)}") from exc
        finally:
            context.close()
    assert _digest(NOTEBOOK) == committed, f"{NOTEBOOK} changed during the test"


def _drive(page, lab):
    url = f"{lab['base']}/lab/tree/{lab['notebook']}?token={lab['token']}"
    page.goto(url, wait_until="domcontentloaded", timeout=PAGE_S * 1000)
    page.wait_for_function(_NOTEBOOK_READY, timeout=PAGE_S * 1000, polling=250)

    # Run all cells, then check that every code cell ran without error.
    page.evaluate(_RUN_ALL)
    page.wait_for_function("() => window.__runAll.done", timeout=RUN_ALL_S * 1000, polling=250)
    run = page.evaluate("() => window.__runAll")
    cells = page.evaluate(_CELLS)
    failed = [f"cell {c['index']}: {'; '.join(c['errors'])}" for c in cells if c["errors"]]
    assert not failed, f"errors while running {lab['notebook']}: {failed}"
    not_run = [c["index"] for c in cells if c["count"] is None]
    assert run["ok"] and not not_run, f"run-all result {run}; code cells not run: {not_run}"

    # The explorer: the output of the last code cell that calls mask_explorer(...).
    explorer = [c["index"] for c in cells if WIDGET_CALL in c["source"]]
    assert explorer, f"no code cell of {lab['notebook']} contains {WIDGET_CALL!r}"
    page.evaluate(_TAG_CELL, explorer[-1])
    cell = page.locator('[data-browser-test="explorer"]')
    cell.scroll_into_view_if_needed()
    # the first slider that is enabled (the explorer disables T for the orders that ignore it)
    handle = cell.locator(".jp-OutputArea-output .widget-slider .noUi-target:not([disabled]) .noUi-handle").first
    image = cell.locator(".jp-OutputArea-output img.widget-image").first
    handle.wait_for(state="visible")
    image.wait_for(state="visible")
    img = image.element_handle()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=img)
    before_src, before = img.evaluate("(i) => i.src"), page.evaluate(_IMAGE_DIGEST, img)

    # Move that slider with the keyboard: End (to its maximum), or Home if it already sits there.
    slider = handle.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' widget-slider ')][1]")
    label = " ".join(slider.locator(".widget-label").first.inner_text().split()) or "(no description)"
    value, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
    key = "Home" if float(value) >= float(top) else "End"
    handle.focus()
    handle.press(key)
    try:
        page.wait_for_function("([h, v]) => h.getAttribute('aria-valuenow') !== v",
                               arg=[handle.element_handle(), value], timeout=10_000)
    except Exception as exc:
        raise AssertionError(f"pressing {key} on slider {label!r} did not move it from {value}") from exc
    moved_to = handle.get_attribute("aria-valuenow")
    try:
        page.wait_for_function("([img, src]) => img.src !== src && img.complete && img.naturalWidth > 0",
                               arg=[img, before_src], timeout=WIDGET_S * 1000)
    except Exception as exc:
        raise AssertionError(f"moving slider {label!r} from {value} to {moved_to} ({key}) did not"
                             f" change the figure within {WIDGET_S} s (the <img> src stayed the same)") from exc
    after = page.evaluate(_IMAGE_DIGEST, img)
    assert after != before, (f"moving slider {label!r} from {value} to {moved_to} replaced the"
                             " figure by an identical image")
