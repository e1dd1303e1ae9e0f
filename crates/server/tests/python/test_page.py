"""The chat page at `/`, driven in headless Chromium with Selenium against a real `hearth serve`.

Run by scripts/test-python.sh (which installs selenium and starts the server; chromium and chromium-driver come from
scripts/install-browser.sh, which scripts/test.sh runs):
the page loads and lists the server's models, streams an answer equal to the API's greedy answer, the stop button
ends the sequence on the server (its cancelled counter), a reload keeps the conversation, the renderer escapes
hostile Markdown, the `--api-key` flow asks for the key, and screenshots at a phone and a desktop width are written
to target/page-screenshots/ (HEARTH_SCREENSHOTS overrides). The browser's console must stay free of errors.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

API = os.environ["HEARTH_URL"]
BASE = API.removesuffix("/v1")
MODEL = os.environ["HEARTH_MODEL"]
BIN = os.environ["HEARTH_BIN"]
SHOTS = os.environ.get("HEARTH_SCREENSHOTS", "target/page-screenshots")
WAIT = 90


def start_browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise AssertionError("chromium and chromedriver are missing: run scripts/install-browser.sh")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
              "--window-size=1440,900", "--disable-extensions", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), r.read().decode()


def metric(name):
    _, _, text = get(BASE + "/metrics")
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    assert m, f"{name} is not in /metrics"
    return int(m.group(1))


def greedy(messages, base=API, key=None):
    body = json.dumps({"model": MODEL, "messages": messages, "temperature": 0}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    req = urllib.request.Request(base + "/chat/completions", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


class Page:
    """Selenium helpers for one browser on one server."""

    def __init__(self, driver, base):
        self.d, self.base = driver, base

    def wait(self, cond, what, timeout=WAIT):
        return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(lambda d: cond(), message=what)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def open(self):
        self.d.get(self.base + "/")
        self.wait(lambda: self.js("return document.readyState") == "complete", "the page to load")

    def models(self):
        return self.js("return [...document.querySelectorAll('#model option')].map(o => o.value)")

    def set_temperature(self, t):
        self.js("const r = document.getElementById('temperature'); r.value = arguments[0];"
                "r.dispatchEvent(new Event('input'))", str(t))

    def ask(self, text):
        n = len(self.answers())
        box = self.d.find_element(By.ID, "prompt")
        box.send_keys(text)
        self.d.find_element(By.ID, "send").click()
        self.wait(lambda: len(self.answers()) == n + 1, "the answer to start", 10)

    def answers(self):
        return self.d.find_elements(By.CSS_SELECTOR, ".msg.assistant")

    def wait_done(self):
        self.wait(lambda: not self.d.find_elements(By.CSS_SELECTOR, ".msg.streaming"), "the answer to finish")

    def chats(self):
        return json.loads(self.js("return localStorage.getItem('hearth.chats')") or "[]")

    def console_errors(self, allowed=()):
        logs = self.d.get_log("browser")
        return [e for e in logs if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]

    def screenshot(self, name, width, height, mobile):
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1,
                                "mobile": mobile})
        time.sleep(0.4)  # layout and the drawer's transition
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name + ".png")
        assert self.d.save_screenshot(path), path
        return path


class ChatPage(unittest.TestCase):
    """One browser, one conversation, in order: answer, stop, reload, renderer, screenshots."""

    @classmethod
    def setUpClass(cls):
        cls.driver = start_browser()
        cls.page = Page(cls.driver, BASE)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    def tearDown(self):
        self.assertEqual(self.page.console_errors(), [], "errors in the browser's console")

    def test_0_headers_and_no_key_needed(self):
        status, headers, body = get(BASE + "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        csp = headers["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self'", csp)
        self.assertIn('content="none"', body)
        for path, kind in (("/chat.js", "text/javascript"), ("/chat.css", "text/css"), ("/favicon.svg", "image/svg")):
            status, headers, _ = get(BASE + path)
            self.assertEqual(status, 200, path)
            self.assertTrue(headers["content-type"].startswith(kind), path)

    def test_1_streams_the_greedy_answer(self):
        p = self.page
        p.open()
        p.wait(lambda: MODEL in p.models(), "the model list")
        self.assertEqual(p.models()[0], MODEL)
        p.set_temperature(0)
        prompt = "Write a Python function that adds two numbers, with a short explanation."
        p.ask(prompt)
        # Streamed: text shows up while the answer is still running.
        p.wait(lambda: p.js("const b = document.querySelector('.msg.streaming .body');"
                            "return b !== null && b.textContent.length > 0"), "streamed text", 60)
        p.wait_done()
        chat = p.chats()[0]
        answer = chat["messages"][1]
        self.assertEqual(chat["messages"][0], {"role": "user", "content": prompt})
        want = greedy([{"role": "user", "content": prompt}])
        self.assertEqual(answer["content"], want)
        self.assertEqual(answer["stats"]["finish"], "stop")
        # Rendered as Markdown: SmolLM2's answer has fenced Python blocks and inline code.
        shown = p.answers()[-1]
        blocks = [b.text for b in shown.find_elements(By.CSS_SELECTOR, ".body pre code")]
        self.assertEqual(len(blocks), want.count("```") // 2)
        self.assertIn("def add_two_numbers(num1, num2):", blocks[0])
        self.assertNotIn("```", shown.find_element(By.CSS_SELECTOR, ".body").text.replace("Copy", ""))
        # Each code block has a copy button that puts the code on the clipboard.
        p.d.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": BASE, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        copies = shown.find_elements(By.CSS_SELECTOR, ".body pre .copy")
        self.assertEqual(len(copies), len(blocks))
        copies[1].click()
        p.wait(lambda: copies[1].text == "Copied", "the copy button's confirmation", 5)
        got = p.d.execute_async_script("navigator.clipboard.readText().then(arguments[0], e => arguments[0](String(e)))")
        self.assertEqual(got, blocks[1])
        meta = shown.find_element(By.CSS_SELECTOR, ".meta").text
        self.assertRegex(meta, rf"{re.escape(MODEL)} · \d+\s+tokens · [\d.]+\s+tok/s · first\s+token\s+[\d.]+\s+s")

    def test_2_stop_cancels_on_the_server(self):
        p = self.page
        cancelled = metric("hearth_requests_cancelled_total")
        p.ask("Count from 1 to 1000, one number per line, and say nothing else.")
        p.wait(lambda: len(p.js("const b = document.querySelector('.msg.streaming .body');"
                                "return b ? b.textContent : ''")) > 20, "some streamed text", 60)
        self.assertEqual(metric("hearth_running_sequences"), 1, "the answer should still be generating")
        p.d.find_element(By.ID, "stop").click()
        p.wait_done()
        self.assertTrue(p.d.find_element(By.ID, "send").is_displayed())
        self.assertIn("stopped", p.answers()[-1].find_element(By.CSS_SELECTOR, ".meta").text)
        deadline = time.time() + 15
        while metric("hearth_requests_cancelled_total") != cancelled + 1 or metric("hearth_running_sequences"):
            self.assertLess(time.time(), deadline, "the server did not cancel the stopped sequence")
            time.sleep(0.1)
        self.assertTrue(p.chats()[0]["messages"][3]["stopped"])

    def test_3_reload_keeps_the_conversation(self):
        p = self.page
        before = p.chats()
        self.assertEqual(len(before), 1)
        p.open()
        p.wait(lambda: MODEL in p.models(), "the model list after the reload")
        bubbles = [b.text for b in p.d.find_elements(By.CSS_SELECTOR, ".msg.user .bubble")]
        self.assertEqual(bubbles, [m["content"] for m in before[0]["messages"] if m["role"] == "user"])
        self.assertEqual(len(p.answers()), 2)
        self.assertEqual(p.chats(), before)
        # A new chat, then deleting it, leaves the first one.
        p.d.find_element(By.ID, "new-chat").click()
        p.ask("Hi")
        p.wait_done()
        self.assertEqual(len(p.chats()), 2)
        self.assertEqual(len(p.d.find_elements(By.CSS_SELECTOR, "#chats li")), 2)
        p.d.find_element(By.CSS_SELECTOR, "#chats li.current .delete-chat").click()
        self.assertEqual(p.chats(), before)
        self.assertEqual(len(p.answers()), 2)

    def test_4_markdown_is_rendered_and_escaped(self):
        self.page.open()
        md = self.page.js
        cases = {
            "<img src=x onerror=alert(1)>": "<p>&lt;img src=x onerror=alert(1)&gt;</p>",
            "[a](javascript:alert(1))": "<p>[a](javascript:alert(1))</p>",
            "[a](https://x.org/?q=1&r=2)":
                '<p><a href="https://x.org/?q=1&amp;r=2" target="_blank" rel="noopener noreferrer">a</a></p>',
            # A quote cannot leave the href: the URL ends at it, and the quote stays text.
            '[a](https://x.org/" onclick="x)': '<p>[a](<a href="https://x.org/" target="_blank" '
                                               'rel="noopener noreferrer">https://x.org/</a>&quot; onclick=&quot;x)</p>',
            "see https://x.org/a_b_c.": '<p>see <a href="https://x.org/a_b_c" target="_blank" '
                                        'rel="noopener noreferrer">https://x.org/a_b_c</a>.</p>',
            "# Title\n\ntext **bold** and *it* and `a<b>*c*`":
                "<h1>Title</h1><p>text <strong>bold</strong> and <em>it</em> and <code>a&lt;b&gt;*c*</code></p>",
            "```python\nif a < b:\n    print('**')\n```":
                '<pre><span class="lang">python</span><code>if a &lt; b:\n    print(&#39;**&#39;)</code></pre>',
            "```\nunclosed <b>": "<pre><code>unclosed &lt;b&gt;</code></pre>",
            "- one\n- two\n  - nested\n3. x": "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul><ol start=\"3\">"
                                               "<li>x</li></ol>",
            "1. a\n2. b": "<ol><li>a</li><li>b</li></ol>",
            "> quoted\n\nline one\nline two": "<blockquote><p>quoted</p></blockquote><p>line one<br>line two</p>",
        }
        for src, want in cases.items():
            self.assertEqual(md("return window.hearthMarkdown(arguments[0])", src), want, src)

    def test_5_screenshots_at_phone_and_desktop_widths(self):
        p = self.page
        p.open()
        p.wait(lambda: MODEL in p.models(), "the model list")
        phone = p.screenshot("phone", 390, 844, True)
        self.assertLessEqual(p.js("return document.documentElement.scrollWidth"), 390, "sideways scrolling")
        self.assertLessEqual(p.js("return document.getElementById('sidebar').getBoundingClientRect().right"), 0,
                             "the conversation list should be a closed drawer on a phone")
        self.assertTrue(p.d.find_element(By.ID, "send").is_displayed())
        p.d.find_element(By.ID, "open-side").click()
        p.screenshot("phone-menu", 390, 844, True)
        self.assertGreater(p.js("return document.getElementById('sidebar').getBoundingClientRect().right"), 200)
        # Tapping beside the drawer closes it.
        ActionChains(p.d).move_to_element_with_offset(p.d.find_element(By.ID, "scrim"), 170, 0).click().perform()
        p.wait(lambda: p.js("return document.getElementById('sidebar').getBoundingClientRect().right") <= 0,
               "the drawer to close", 5)
        desktop = p.screenshot("desktop", 1440, 900, False)
        self.assertTrue(p.d.find_element(By.ID, "sidebar").is_displayed())
        self.assertFalse(p.d.find_element(By.ID, "open-side").is_displayed())
        self.assertLessEqual(p.js("return document.documentElement.scrollWidth"), 1440)
        p.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        dark = p.screenshot("phone-dark", 390, 844, True)
        self.assertEqual(p.js("return getComputedStyle(document.body).backgroundColor"), "rgb(23, 19, 15)")
        p.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        p.d.find_element(By.ID, "new-chat-top").click()
        p.screenshot("phone-new-chat", 390, 844, True)
        self.assertTrue(p.d.find_element(By.ID, "empty").is_displayed())
        p.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        for path in (phone, desktop, dark):
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", path)

    def test_6_unreadable_storage_is_ignored(self):
        p = self.page
        good = {"id": "a", "title": "kept", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "**a**", "stats": "fast", "reasoning": 5, "model": {}}]}
        for chats in ("{not json", json.dumps({"id": 1}), json.dumps([{"id": 2}, good, None, 7])):
            p.js("localStorage.setItem('hearth.chats', arguments[0]);"
                 "localStorage.setItem('hearth.settings', '{\"temperature\": \"hot\", \"model\": 5}');"
                 "localStorage.setItem('hearth.current', '[]')", chats)
            p.open()
            p.wait(lambda: MODEL in p.models(), "the model list")
            titles = [b.text for b in p.d.find_elements(By.CSS_SELECTOR, "#chats .open-chat")]
            self.assertEqual(titles, ["kept"] if "kept" in chats else [], chats)
            self.assertEqual(p.js("return document.getElementById('temperature').value"), "0.7")
        self.assertEqual(p.answers()[0].find_element(By.CSS_SELECTOR, ".body").get_attribute("innerHTML"),
                         "<p><strong>a</strong></p>")


class KeyAndReasoning(unittest.TestCase):
    """A second server, started with --api-key, serving a reasoning model: the tiny random-weight Qwen3 of
    tests/fixtures converted with a template whose generation prompt opens `<think>` (as tests/reasoning.rs does), so
    its greedy output is all reasoning. The page loads without the key, asks for it, then streams the reasoning into
    its collapsible block."""

    KEY = "page-test-key"
    TEMPLATE = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}")

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        src = os.path.join(os.path.dirname(__file__), "../../../../tests/fixtures/tiny/qwen3")
        ckpt = os.path.join(cls.tmp.name, "qwen3")
        shutil.copytree(src, ckpt)
        with open(os.path.join(ckpt, "chat_template.jinja"), "w") as f:
            f.write(cls.TEMPLATE)
        gguf = os.path.join(cls.tmp.name, "tiny-think.gguf")
        subprocess.run([BIN, "convert", ckpt, gguf, "--outtype", "f32"], check=True, capture_output=True)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        cls.log = tempfile.TemporaryFile()
        cls.server = subprocess.Popen(
            [BIN, "serve", gguf, "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "96",
             "--api-key", cls.KEY], stdout=cls.log, stderr=subprocess.STDOUT)
        cls.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                get(cls.base + "/health")
                break
            except OSError:
                if cls.server.poll() is not None or time.time() > deadline:
                    cls.log.seek(0)
                    cls.server.kill()
                    raise AssertionError("hearth serve --api-key did not start:\n" + cls.log.read().decode())
                time.sleep(0.2)
        cls.driver = start_browser()
        cls.page = Page(cls.driver, cls.base)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.server.terminate()
        cls.server.wait(30)
        cls.log.close()
        cls.tmp.cleanup()

    def test_asks_for_the_key_then_streams_the_reasoning(self):
        p = self.page
        with self.assertRaises(urllib.error.HTTPError) as e:
            get(self.base + "/v1/models")
        self.assertEqual(e.exception.code, 401)
        status, _, body = get(self.base + "/")
        self.assertEqual(status, 200)
        self.assertIn('content="required"', body)

        p.open()
        p.wait(lambda: p.d.find_element(By.ID, "key-dialog").is_displayed(), "the key dialog")
        self.assertEqual(p.models(), [])
        # A wrong key: the server refuses it (the one console error allowed here) and the page asks again.
        p.d.find_element(By.ID, "key-input").send_keys("wrong")
        p.d.find_element(By.ID, "key-save").click()
        p.wait(lambda: p.d.find_element(By.ID, "key-error").is_displayed(), "the refused-key message")
        self.assertEqual([e["message"] for e in p.console_errors()],
                         [f"{self.base}/v1/models - Failed to load resource: the server responded with a status of "
                          "401 (Unauthorized)"])
        box = p.d.find_element(By.ID, "key-input")
        box.clear()
        box.send_keys(self.KEY)
        p.d.find_element(By.ID, "key-save").click()
        p.wait(lambda: p.models() == ["tiny-think"], "the model list with the key")
        self.assertFalse(p.d.find_element(By.ID, "key-dialog").is_displayed())
        self.assertEqual(json.loads(p.js("return localStorage.getItem('hearth.apiKey')")), self.KEY)

        p.set_temperature(0)
        prompt = "Why is the sky blue?"
        p.ask(prompt)
        p.wait_done()
        answer = p.chats()[0]["messages"][1]
        self.assertNotIn("error", answer)
        body = json.dumps({"model": "tiny-think", "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0}).encode()
        req = urllib.request.Request(self.base + "/v1/chat/completions", data=body, headers={
            "Content-Type": "application/json", "Authorization": "Bearer " + self.KEY})
        with urllib.request.urlopen(req, timeout=60) as r:
            want = json.loads(r.read())["choices"][0]
        self.assertGreater(len(want["message"]["reasoning_content"]), 40)
        self.assertEqual(answer["reasoning"], want["message"]["reasoning_content"])
        self.assertEqual(answer["content"], want["message"]["content"] or "")
        self.assertEqual(answer["stats"]["finish"], want["finish_reason"])
        # The block opened while the model was thinking (the page opens it then); it collapses on a click.
        block = p.answers()[-1].find_element(By.CSS_SELECTOR, "details.reasoning")
        self.assertTrue(p.js("return arguments[0].open", block))
        self.assertEqual(block.find_element(By.CSS_SELECTOR, ".thoughts").text, answer["reasoning"].strip())
        p.screenshot("desktop-reasoning", 1440, 900, False)
        p.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        block.find_element(By.TAG_NAME, "summary").click()
        self.assertFalse(p.js("return arguments[0].open", block), "the reasoning block should collapse")

        # The key is kept: a reload does not ask again.
        p.open()
        p.wait(lambda: p.models() == ["tiny-think"], "the model list after the reload")
        self.assertFalse(p.d.find_element(By.ID, "key-dialog").is_displayed())
        self.assertEqual(p.console_errors(), [])


if __name__ == "__main__":
    unittest.main()
