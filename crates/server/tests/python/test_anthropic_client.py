"""The official `anthropic` Python client against `hearth serve`: `messages.create` streamed and not (greedy text
equal to `hearth run --temp 0`), the `messages.stream` helpers, a forced tool call and its round trip,
`count_tokens`, and errors raised as the package's own exception types. Run by scripts/test-python.sh, against a
server of its own (own_server.py: an API key)."""

import json
import unittest

import anthropic

from own_server import KEY, OwnServer
from test_openai_client import MODEL, N, hearth_run

SERVER = None


def setUpModule():
    global SERVER
    SERVER = OwnServer()


def tearDownModule():
    SERVER.stop()

# This client (2.x) no longer sends `temperature`; older clients and other tools do, and hearth honours it.
GREEDY = {"temperature": 0}

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16}},
                     "required": ["city"]},
}


# One call (the small model repeats a call while parallel calls are allowed).
ONE_CALL = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


class AnthropicClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = anthropic.Anthropic(base_url=SERVER.base, api_key=KEY, max_retries=0, timeout=300)

    def test_create_greedy_equals_run_streamed_or_not(self):
        question = "What is the capital of Spain?"
        want = hearth_run(question, raw=False)
        messages = [{"role": "user", "content": question}]
        m = self.client.messages.create(model=MODEL, max_tokens=N, extra_body=GREEDY, messages=messages)
        self.assertEqual(m.role, "assistant")
        self.assertEqual([b.type for b in m.content], ["text"])
        self.assertEqual(m.content[0].text, want)
        self.assertIn(m.stop_reason, ("end_turn", "max_tokens"))
        self.assertLessEqual(m.usage.output_tokens, N)
        events = list(self.client.messages.create(model=MODEL, max_tokens=N, extra_body=GREEDY, messages=messages,
                                                  stream=True))
        kinds = [e.type for e in events]
        self.assertEqual(kinds[0], "message_start")
        self.assertEqual(kinds[-3:], ["content_block_stop", "message_delta", "message_stop"])
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
        self.assertEqual(text, want)
        self.assertEqual(events[-2].delta.stop_reason, m.stop_reason)
        self.assertEqual(events[-2].usage.output_tokens, m.usage.output_tokens)

    def test_stream_helpers(self):
        question = "Name a color."
        want = hearth_run(question, raw=False)
        with self.client.messages.stream(model=MODEL, max_tokens=N, extra_body=GREEDY,
                                         messages=[{"role": "user", "content": question}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        self.assertEqual(text, want)
        self.assertEqual(final.content[0].text, want)
        self.assertIsNotNone(final.stop_reason)

    def test_tool_round_trip(self):
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        m = self.client.messages.create(model=MODEL, max_tokens=60, extra_body=GREEDY, tools=[WEATHER],
                                        tool_choice=ONE_CALL, messages=messages)
        self.assertEqual(m.stop_reason, "tool_use")
        call = next(b for b in m.content if b.type == "tool_use")
        self.assertEqual(call.name, "get_weather")
        self.assertIsInstance(call.input["city"], str)
        # The stream helper assembles the same call from input_json_delta events.
        with self.client.messages.stream(model=MODEL, max_tokens=60, extra_body=GREEDY, tools=[WEATHER],
                                         tool_choice=ONE_CALL,
                                         messages=messages) as s:
            final = s.get_final_message()
        streamed = next(b for b in final.content if b.type == "tool_use")
        self.assertEqual(streamed.input, call.input)
        messages += [
            {"role": "assistant", "content": m.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
        ]
        r = self.client.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, tools=[WEATHER],
                                        messages=messages)
        self.assertEqual(r.role, "assistant")
        self.assertIn(r.stop_reason, ("end_turn", "max_tokens", "tool_use"))

    def test_structured_output_and_prefill(self):
        schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                  "required": ["city"], "additionalProperties": False}
        m = self.client.messages.create(
            model=MODEL, max_tokens=40, extra_body=GREEDY,
            messages=[{"role": "user", "content": "Which city is the capital of France?"}],
            output_config={"format": {"type": "json_schema", "schema": schema}})
        self.assertEqual(set(json.loads(m.content[0].text)), {"city"})
        # Prefill: the answer continues the final assistant message.
        question = "What is the capital of Spain?"
        full = self.client.messages.create(model=MODEL, max_tokens=N, extra_body=GREEDY,
                                           messages=[{"role": "user", "content": question}]).content[0].text
        head = full.split(" ")[0]
        rest = self.client.messages.create(
            model=MODEL, max_tokens=N, extra_body=GREEDY,
            messages=[{"role": "user", "content": question}, {"role": "assistant", "content": head}])
        # The same greedy answer, one token further (the first came from the prefill).
        self.assertTrue((head + rest.content[0].text).startswith(full), (full, head, rest.content[0].text))

    def test_count_tokens(self):
        messages = [{"role": "user", "content": "How many tokens is this?"}]
        n = self.client.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")
        m = self.client.messages.create(model=MODEL, max_tokens=1, messages=messages, system="Be brief.")
        used = m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
        self.assertEqual(n.input_tokens, used)
        longer = self.client.messages.count_tokens(model=MODEL, messages=messages, system="Be brief, please.")
        self.assertGreater(longer.input_tokens, n.input_tokens)

    def test_errors_are_anthropic_exceptions(self):
        messages = [{"role": "user", "content": "Hi"}]
        with self.assertRaises(anthropic.NotFoundError):
            self.client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=messages)
        with self.assertRaises(anthropic.BadRequestError) as e:
            self.client.messages.create(model=MODEL, max_tokens=5, messages=messages, extra_body={"temperature": 7})
        self.assertEqual(e.exception.body["error"]["type"], "invalid_request_error")
        with self.assertRaises(anthropic.BadRequestError):
            self.client.messages.create(model=MODEL, max_tokens=100000, messages=messages)
        wrong = anthropic.Anthropic(base_url=SERVER.base, api_key="wrong", max_retries=0)
        with self.assertRaises(anthropic.AuthenticationError) as e:
            wrong.messages.create(model=MODEL, max_tokens=5, messages=messages)
        self.assertEqual(e.exception.body["error"]["type"], "authentication_error")


if __name__ == "__main__":
    unittest.main()
