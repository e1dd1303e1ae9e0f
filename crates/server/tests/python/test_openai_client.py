"""The official `openai` Python client against `hearth serve smollm2-135m`: chat and completions, streaming and
not; greedy output equals `hearth run --temp 0` for the same prompt. Run by scripts/test-python.sh, which starts
the server and sets HEARTH_URL (the /v1 base URL), HEARTH_BIN (the hearth binary) and HEARTH_MODEL."""

import os
import subprocess
import unittest

import openai

URL = os.environ["HEARTH_URL"]
BIN = os.environ["HEARTH_BIN"]
MODEL = os.environ.get("HEARTH_MODEL", "smollm2-135m")
N = 24


def hearth_run(prompt, raw):
    """What `hearth run` prints greedily for `prompt` (stdout only)."""
    cmd = [BIN, "run", MODEL, "--temp", "0", "-n", str(N), "-t", "1"]
    if raw:
        cmd.append("--raw")
    out = subprocess.run(cmd + [prompt], check=True, capture_output=True, text=True, timeout=300).stdout
    # A chat answer ends its line; raw completion prints exactly the generated text.
    return out if raw else out.removesuffix("\n")


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = openai.OpenAI(base_url=URL, api_key="unused", max_retries=0, timeout=300)

    def test_models(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [MODEL])

    def test_completion_greedy_equals_run(self):
        prompt = "The three primary colors are"
        want = hearth_run(prompt, raw=True)
        r = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=N, temperature=0)
        self.assertEqual(r.choices[0].text, want)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertLessEqual(r.usage.completion_tokens, N)
        # Streamed: the same text, chunk by chunk.
        stream = self.client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=N, temperature=0, stream=True
        )
        chunks = list(stream)
        self.assertGreater(len(chunks), 1)
        self.assertEqual("".join(c.choices[0].text for c in chunks if c.choices), want)
        self.assertEqual(chunks[-1].choices[0].finish_reason, r.choices[0].finish_reason)

    def test_chat_greedy_equals_run(self):
        question = "What is the capital of Japan?"
        want = hearth_run(question, raw=False)
        messages = [{"role": "user", "content": question}]
        r = self.client.chat.completions.create(model=MODEL, messages=messages, max_tokens=N, temperature=0)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].message.content, want)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        stream = self.client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=N,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, want)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, r.usage.completion_tokens)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, [r.choices[0].finish_reason])

    def test_errors_are_openai_errors(self):
        with self.assertRaises(openai.NotFoundError):
            self.client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model=MODEL, prompt="Hi", max_tokens=100000)
        self.assertIn("context", str(e.exception))
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2)
        self.assertEqual(e.exception.param, "n")


if __name__ == "__main__":
    unittest.main()
