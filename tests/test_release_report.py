"""The release report (`voxc report --release`, compiler/release.py) opened in a real headless browser:
Playwright drives the system Chromium (Debian's `chromium`; .ci/run installs it, nothing is downloaded).
Over tiny cpu and apple builds and a jetson build with a merged stand-in device result, the page loads without
errors, every <audio> decodes, every plot renders and each target's sections are there; a page with a
corrupted audio clip or plot fails the same check."""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from voxc.cli import main

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NO_BROWSER = "chromium is not installed at /usr/bin/chromium (apt-get install chromium; .ci/run does this as root)"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_dir(tiny_build, tmp_path_factory) -> Path:
    """A fresh artifacts folder (the tiny build's stage cache, hard-linked) with cpu, apple (deferred rows)
    and jetson into which a stand-in device result was merged, and the release report over all three."""
    from voxc.compiler.build import BuildRequest, build
    from voxc.core.atomic import link_or_copy
    from voxc.models.voxc.presets import preset
    out = tmp_path_factory.mktemp("release")
    shutil.copytree(tiny_build / "cache", out / "cache", copy_function=link_or_copy)
    for target in ("cpu", "apple", "jetson"):      # the exports come from the cache; the folders are new
        with contextlib.redirect_stdout(io.StringIO()):
            assert build(BuildRequest(target=target, preset=preset("tiny"), preset_name="tiny", artifacts=out, jobs=2))
    dev = out / "standin.json"
    res = subprocess.run([sys.executable, "verify.py", "--runner", "onnxruntime", "--out", str(dev)],
                         cwd=out / "jetson" / "bundle", capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert main(["report", "--target", "jetson", "--artifacts", str(out), "--merge", str(dev)]) == 0
    assert main(["report", "--release", "--artifacts", str(out)]) == 0
    return out


@contextlib.contextmanager
def served(folder: Path):
    """A loopback HTTP server over `folder` (a thread; shut down on exit)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


AUDIO_STATE = """() => Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(res => {
  const done = () => res({ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null,
                          label: (a.dataset.role || '') + ' ' + (a.dataset.runtime || '')});
  if (a.readyState >= 2 || a.error) return done();
  a.addEventListener('loadeddata', done, {once: true});
  a.addEventListener('error', done, {once: true});
  setTimeout(done, 15000);
})))"""


def open_in_browser(url: str) -> dict:
    """Loads `url` in headless Chromium; returns the errors it logged, the state of every <audio> and
    <img>, and per target section the parts it holds."""
    if not CHROMIUM.exists():
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
            page.goto(url, wait_until="load", timeout=60_000)
            audio = page.evaluate(AUDIO_STATE)
            images = page.evaluate("() => [...document.images].map(i => ({alt: i.alt, complete: i.complete, "
                                   "width: i.naturalWidth, height: i.naturalHeight}))")
            sections = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('section.target')]
              .map(s => [s.dataset.target, {decisions: s.querySelectorAll('table.decisions tr').length - 1,
                chain: !!s.querySelector('table.chain'), device: s.querySelector('ul.device').innerText,
                listening: s.querySelector('div.listening').innerText,
                audio: s.querySelectorAll('audio').length, spectrograms: s.querySelectorAll('img.spectrogram').length,
                plots: s.querySelectorAll('img.metric-plot').length}]))""")
        finally:
            browser.close()
    return {"errors": errors, "audio": audio, "images": images, "sections": sections}


def problems(seen: dict) -> list[str]:
    """What a person would find broken: errors, audio that does not decode, plots that do not render."""
    bad = list(seen["errors"])
    bad += [f"audio {a['label']} not decoded ({a})" for a in seen["audio"]
            if a["error"] is not None or a["ready"] < 2 or not (a["duration"] or 0) > 0]
    bad += [f"image {i['alt']} not rendered" for i in seen["images"] if not i["complete"] or i["width"] == 0]
    return bad


def test_release_report_opens_with_all_audio_and_plots(release_dir):
    page = release_dir / "release.html"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.read_text())      # self-contained
    with served(release_dir) as base:
        seen = open_in_browser(f"{base}/release.html")
    assert problems(seen) == []
    cpu, apple, jetson = (seen["sections"][t] for t in ("cpu", "apple", "jetson"))
    assert set(seen["sections"]) == {"cpu", "apple", "jetson"}
    assert cpu["decisions"] == 12 and cpu["chain"] and cpu["plots"] == 6         # 6 models x 2 runtimes
    assert cpu["audio"] == 2 * 3 and cpu["spectrograms"] == 2 * 2                 # 2 utterances: reference + 2 runtimes
    assert "No audio" not in cpu["listening"]
    from voxc.targets import backend
    assert apple["plots"] == 0 and jetson["plots"] == 6       # Core ML: spec checks only until a Mac merges
    for t, rt in ((apple, "coreml"), (jetson, "tensorrt")):
        assert t["decisions"] >= 6
        if backend(rt).unavailable():                           # not runnable here: its rows, and why no audio
            assert t["audio"] == 0 and f"No audio for {rt}" in t["listening"]
    assert apple["device"] == "none"
    assert "onnxruntime (stand-in)" in jetson["device"] and jetson["plots"] == 6
    assert len(seen["images"]) == sum(t["plots"] + t["spectrograms"] for t in (cpu, apple, jetson))

    doc = json.loads((release_dir / "release.json").read_text())
    targets = {t["target"]: t for t in doc["targets"]}
    voc = targets["cpu"]["models"]["vocoder"]["runtimes"]["onnxruntime"]
    assert voc["accepted"] and voc["bytes"] > 0 and voc["speed"]["vs_fp32"] > 0   # the policy's paired timing
    assert {"snr_db", "mcd_db"} <= {k.split(".")[1] for k in voc["checks"][voc["accepted"]]["worst"]}
    assert all(r["reason"] for r in voc["rejected"])
    assert targets["jetson"]["status"] == "deferred" and targets["jetson"]["deferred_rows"] > 0
    assert targets["jetson"]["device_parity"][0]["stand_in"] is True and targets["apple"]["deferred_rows"] > 0
    utt = targets["cpu"]["listening"]["utterances"][0]
    assert set(utt["metrics"]) == {"onnxruntime", "openvino"} and "snr_db" in utt["metrics"]["openvino"]


def test_a_corrupted_clip_or_plot_fails_the_browser_check(release_dir, tmp_path):
    text = (release_dir / "release.html").read_text()
    text = re.sub(r"data:audio/wav;base64,[A-Za-z0-9+/=]{40}", "data:audio/wav;base64,AAAAbm90IGEgd2F2ZSBmaWxl", text,
                  count=1)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]{40}", "data:image/png;base64,AAAAbm90IGEgcG5n", text, count=1)
    (tmp_path / "broken.html").write_text(text)
    seen = open_in_browser((tmp_path / "broken.html").as_uri())
    bad = problems(seen)
    assert any(b.startswith("audio reference") for b in bad) and any(b.startswith("image ") for b in bad), bad


def test_release_without_any_built_target_is_one_line(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    assert main(["report", "--release", "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no built target under" in err and len(err.splitlines()) == 1
    assert main(["report", "--release", "--artifacts", str(tmp_path), "--out", str(tmp_path / "x.txt")]) == 2
