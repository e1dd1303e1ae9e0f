"""The official `ollama` Python client against `hearth serve`: chat and generate, streamed and not, with greedy
output equal to `hearth run --temp 0` and to the OpenAI endpoint; list, show, ps; pull with progress from a local
Hub stand-in (hub.py) and delete; `format=` with a JSON schema; a tool round trip; errors as `ollama.ResponseError`.
Run by scripts/test-python.sh, against a server of its own (own_server.py: an API key, its own store)."""

import json
import os
import subprocess
import unittest

import ollama
import openai

from own_server import KEY, OwnServer
from test_openai_client import BIN, MODEL, N, hearth_run

SERVER = None


def setUpModule():
    global SERVER
    SERVER = OwnServer()


def tearDownModule():
    SERVER.stop()


def store_list():
    """`hearth list` of the server's store."""
    env = dict(os.environ, HEARTH_HOME=SERVER.store)
    return subprocess.run([BIN, "list"], check=True, capture_output=True, text=True, env=env, timeout=60).stdout


class OllamaClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = ollama.Client(host=SERVER.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)

    def greedy(self):
        return {"temperature": 0, "num_predict": N}

    def test_chat_greedy_equals_run_and_openai(self):
        question = "What is the capital of Italy?"
        want = hearth_run(question, raw=False)
        messages = [{"role": "user", "content": question}]
        r = self.client.chat(model=MODEL, messages=messages, options=self.greedy())
        self.assertEqual(r.message.role, "assistant")
        self.assertEqual(r.message.content, want)
        self.assertTrue(r.done)
        self.assertIn(r.done_reason, ("stop", "length"))
        self.assertGreater(r.prompt_eval_count, 0)
        self.assertLessEqual(r.eval_count, N)
        self.assertGreater(r.total_duration, 0)
        self.assertGreaterEqual(r.total_duration, r.eval_duration)
        chunks = list(self.client.chat(model=MODEL, messages=messages, options=self.greedy(), stream=True))
        self.assertGreater(len(chunks), 2)
        self.assertEqual("".join(c.message.content for c in chunks), want)
        self.assertTrue(all(not c.done for c in chunks[:-1]))
        self.assertTrue(chunks[-1].done)
        self.assertEqual(chunks[-1].eval_count, r.eval_count)
        oa = openai.OpenAI(base_url=f"{SERVER.base}/v1", api_key=KEY, max_retries=0, timeout=300)
        o = oa.chat.completions.create(model=MODEL, messages=messages, max_tokens=N, temperature=0)
        self.assertEqual(o.choices[0].message.content, r.message.content)
        self.assertEqual(o.usage.prompt_tokens, r.prompt_eval_count)

    def test_generate_raw_and_templated(self):
        prompt = "Once upon a time"
        want = hearth_run(prompt, raw=True)
        r = self.client.generate(model=MODEL, prompt=prompt, raw=True, options=self.greedy())
        self.assertEqual(r.response, want)
        self.assertTrue(r.done)
        chunks = list(self.client.generate(model=MODEL, prompt=prompt, raw=True, options=self.greedy(), stream=True))
        self.assertEqual("".join(c.response for c in chunks), want)
        question = "Name a fruit."
        r = self.client.generate(model=MODEL, prompt=question, options=self.greedy())
        self.assertEqual(r.response, hearth_run(question, raw=False))
        with self.assertRaises(ollama.ResponseError) as e:
            self.client.generate(model=MODEL, prompt="def f(", suffix="    return 1")
        self.assertEqual(e.exception.status_code, 400)
        self.assertIn("suffix", e.exception.error)

    def test_list_show_ps(self):
        names = [m.model for m in self.client.list().models]
        self.assertEqual(names, [MODEL])
        s = self.client.show(MODEL)
        self.assertEqual(s.modelinfo["general.architecture"], "llama")
        self.assertIn("completion", s.capabilities)
        self.assertEqual(s.details.format, "gguf")
        self.assertTrue(s.template)
        ps = self.client.ps().models
        self.assertEqual([m.model for m in ps], [MODEL])
        self.assertGreater(ps[0].size, 0)

    def test_format_with_a_schema(self):
        schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                                   "age": {"type": "integer", "minimum": 0, "maximum": 150}},
                  "required": ["name", "age"], "additionalProperties": False}
        r = self.client.chat(model=MODEL, messages=[{"role": "user", "content": "Invent a person."}],
                             format=schema, options={"temperature": 0, "num_predict": 60})
        person = json.loads(r.message.content)
        self.assertEqual(set(person), {"name", "age"})
        self.assertIsInstance(person["age"], int)
        r = self.client.generate(model=MODEL, prompt="A JSON object with a color:", format="json",
                                 options={"temperature": 0, "num_predict": 30})
        self.assertTrue(r.response.lstrip().startswith("{"), r.response)

    def test_tool_history_round_trip(self):
        def get_weather(city: str) -> str:
            """Weather in a city.

            Args:
              city: the city
            """
            return "Sunny"

        messages = [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "Sunny, 21 C", "tool_name": "get_weather"},
        ]
        r = self.client.chat(model=MODEL, messages=messages, tools=[get_weather], options={"num_predict": 8})
        self.assertTrue(r.done)
        for call in r.message.tool_calls or []:
            self.assertIsInstance(call.function.arguments, dict)

    def test_pull_with_progress_then_delete(self):
        progress = list(self.client.pull("hf://org/Tiny-GGUF", stream=True))
        statuses = [p.status for p in progress]
        self.assertEqual(statuses[0], "pulling manifest")
        self.assertEqual(statuses[-1], "success")
        self.assertIn("writing manifest", statuses)
        transfers = [p for p in progress if p.total]
        self.assertGreater(len(transfers), 2, statuses)
        self.assertEqual(transfers[-1].completed, transfers[-1].total)
        self.assertTrue(transfers[-1].digest.startswith("sha256:"))
        done = [p.completed for p in transfers]
        self.assertEqual(done, sorted(done))
        self.assertIn("tiny-q8_0", store_list())
        # Pulled again: nothing to download, still a success.
        self.assertEqual(self.client.pull("hf://org/Tiny-GGUF").status, "success")
        self.assertEqual(self.client.delete("tiny-q8_0").status, "success")
        self.assertNotIn("tiny-q8_0", store_list())
        with self.assertRaises(ollama.ResponseError) as e:
            self.client.delete("tiny-q8_0")
        self.assertEqual(e.exception.status_code, 404)
        with self.assertRaises(ollama.ResponseError) as e:
            list(self.client.pull("hf://org/Missing-GGUF", stream=True))
        self.assertIn("not found", str(e.exception).lower())

    def test_errors(self):
        with self.assertRaises(ollama.ResponseError) as e:
            self.client.chat(model="llama3.2", messages=[{"role": "user", "content": "Hi"}])
        self.assertEqual(e.exception.status_code, 404)
        self.assertIn("llama3.2", e.exception.error)
        with self.assertRaises(ollama.ResponseError) as e:
            self.client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], options={"mirostat": 2})
        self.assertEqual(e.exception.status_code, 400)
        unauthorized = ollama.Client(host=SERVER.base, timeout=60)
        with self.assertRaises(ollama.ResponseError) as e:
            unauthorized.list()
        self.assertEqual(e.exception.status_code, 401)


if __name__ == "__main__":
    unittest.main()
