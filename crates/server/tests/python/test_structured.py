"""Structured output through the official `openai` client against `hearth serve`: `response_format` json_schema on
twelve schemas (validated with `jsonschema`) at temperatures 0 and 1, `chat.completions.parse` with a Pydantic
model, tools (`required`, a named function; streamed and not; a full round trip), a load test (concurrent greedy
streams, half constrained, each equal to the same request alone) and a pathological schema refused with a 400
while another stream keeps going. Run by scripts/test-python.sh (HEARTH_URL, HEARTH_MODEL)."""

import concurrent.futures as cf
import json
import os
import threading
import unittest

import jsonschema
import openai
import pydantic

URL = os.environ["HEARTH_URL"]
MODEL = os.environ.get("HEARTH_MODEL", "smollm2-135m")
MAX = 96

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 130}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "location": {
                "type": "object",
                "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}},
                "required": ["lat", "lon"],
                "additionalProperties": False,
            },
        },
        "required": ["city", "location"],
        "additionalProperties": False,
    },
    "bounded_array": {
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 2, "maxItems": 4}},
        "required": ["colors"],
        "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {"mood": {"enum": ["happy", "sad", "angry"]}, "level": {"type": "integer", "enum": [1, 2, 3]}},
        "required": ["mood", "level"],
        "additionalProperties": False,
    },
    "const": {
        "type": "object",
        "properties": {"version": {"const": "v1"}, "ok": {"type": "boolean"}},
        "required": ["version", "ok"],
        "additionalProperties": False,
    },
    "any_of": {
        "type": "object",
        "properties": {"id": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1000}, {"type": "string", "maxLength": 8}]}},
        "required": ["id"],
        "additionalProperties": False,
    },
    "defs_ref": {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -100, "maximum": 100}, "y": {"type": "integer", "minimum": -100, "maximum": 100}}, "required": ["x", "y"], "additionalProperties": False}},
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"],
        "additionalProperties": False,
    },
    "pattern": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}, "email": {"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,8}\\.com$"}},
        "required": ["code", "email"],
        "additionalProperties": False,
    },
    "numeric_bounds": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "count": {"type": "integer", "exclusiveMinimum": 0, "maximum": 50},
        },
        "required": ["score", "count"],
        "additionalProperties": False,
    },
    "nullable": {
        "type": "object",
        "properties": {"nickname": {"type": ["string", "null"], "maxLength": 12}, "age": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 120}, {"type": "null"}]}},
        "required": ["nickname", "age"],
        "additionalProperties": False,
    },
    "array_of_objects": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "maxItems": 3,
                "items": {"type": "object", "properties": {"sku": {"type": "string", "maxLength": 8}, "qty": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["sku", "qty"], "additionalProperties": False},
            }
        },
        "required": ["items"],
        "additionalProperties": False,
    },
    "top_level_array": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 1, "maxItems": 5},
}


def client():
    return openai.OpenAI(base_url=URL, api_key="unused", max_retries=0, timeout=300)


def ask(name):
    return [{"role": "user", "content": f"Give me a JSON example of a {name.replace('_', ' ')}."}]


class Structured(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()

    def schema_request(self, name, temperature, seed):
        r = self.client.chat.completions.create(
            model=MODEL,
            messages=ask(name),
            max_tokens=MAX,
            temperature=temperature,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}},
        )
        return name, temperature, seed, r.choices[0]

    def test_json_schemas_validate(self):
        self.assertGreaterEqual(len(SCHEMAS), 12)
        jobs = [(n, 0.0, 1) for n in SCHEMAS] + [(n, 1.0, s) for n in SCHEMAS for s in (7, 8)]
        stopped = 0
        with cf.ThreadPoolExecutor(4) as pool:
            for name, temp, seed, choice in pool.map(lambda j: self.schema_request(*j), jobs):
                if choice.finish_reason == "stop":
                    stopped += 1
                    doc = json.loads(choice.message.content)
                    jsonschema.validate(doc, SCHEMAS[name])
                else:
                    self.assertEqual(choice.finish_reason, "length", (name, temp, seed))
        self.assertGreater(stopped, len(jobs) * 3 // 4, f"only {stopped} of {len(jobs)} ended with stop")

    def test_json_object_and_llama_server_fields(self):
        r = self.client.chat.completions.create(
            model=MODEL, messages=ask("book"), max_tokens=MAX, temperature=0, response_format={"type": "json_object"}
        )
        if r.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(r.choices[0].message.content), dict)
        # llama-server's json_schema and (Lark) grammar fields, on both endpoints.
        schema = SCHEMAS["enum"]
        r = self.client.chat.completions.create(
            model=MODEL, messages=ask("mood"), max_tokens=MAX, temperature=0, extra_body={"json_schema": schema}
        )
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
        r = self.client.completions.create(
            model=MODEL, prompt="The answer is", max_tokens=8, temperature=0, extra_body={"grammar": 'start: " " ("yes" | "no")'}
        )
        self.assertIn(r.choices[0].text, (" yes", " no"))
        r = self.client.completions.create(
            model=MODEL, prompt="A person:", max_tokens=MAX, temperature=0, extra_body={"json_schema": SCHEMAS["person"]}
        )
        jsonschema.validate(json.loads(r.choices[0].text), SCHEMAS["person"])

    def test_parse_with_pydantic(self):
        class City(pydantic.BaseModel):
            name: str = pydantic.Field(max_length=20)
            population: int = pydantic.Field(ge=0, le=100_000_000)
            capital: bool

        r = self.client.chat.completions.parse(
            model=MODEL, messages=ask("city"), max_tokens=MAX, temperature=0, response_format=City
        )
        city = r.choices[0].message.parsed
        self.assertIsInstance(city, City)
        self.assertLessEqual(len(city.name), 20)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": -1000, "maximum": 1000}, "b": {"type": "integer", "minimum": -1000, "maximum": 1000}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
PARAMS = {"get_weather": WEATHER["function"]["parameters"], "add": ADD["function"]["parameters"]}


def streamed_calls(stream):
    """Tool calls rebuilt from streamed deltas, OpenAI style: by index, name and arguments concatenated."""
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        finish = ch.finish_reason or finish
        for d in ch.delta.tool_calls or []:
            c = calls.setdefault(d.index, {"name": "", "arguments": ""})
            if d.function.name:
                c["name"] += d.function.name
            if d.function.arguments:
                c["arguments"] += d.function.arguments
    return [calls[i] for i in sorted(calls)], finish


class Tools(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()

    def check(self, calls, allowed):
        self.assertGreater(len(calls), 0)
        for c in calls:
            self.assertIn(c["name"], allowed)
            jsonschema.validate(json.loads(c["arguments"]), PARAMS[c["name"]])

    def test_required_and_named_streamed_and_not(self):
        messages = [{"role": "user", "content": "What is the weather in Paris, and what is 2 + 3?"}]
        for choice, allowed in (("required", {"get_weather", "add"}), ({"type": "function", "function": {"name": "add"}}, {"add"})):
            args = dict(
                model=MODEL, messages=messages, tools=[WEATHER, ADD], tool_choice=choice, parallel_tool_calls=False,
                max_tokens=MAX, temperature=0, seed=3,
            )
            r = self.client.chat.completions.create(**args)
            msg = r.choices[0].message
            self.assertEqual(r.choices[0].finish_reason, "tool_calls", msg)
            calls = [{"name": c.function.name, "arguments": c.function.arguments} for c in msg.tool_calls]
            self.check(calls, allowed)
            for c in msg.tool_calls:
                self.assertEqual(c.type, "function")
                self.assertTrue(c.id)
            got, finish = streamed_calls(self.client.chat.completions.create(stream=True, **args))
            self.assertEqual(finish, "tool_calls")
            self.assertEqual(got, calls)

    def test_round_trip(self):
        messages = [{"role": "user", "content": "What is 20 + 22? Use the add tool."}]
        r = self.client.chat.completions.create(
            model=MODEL, messages=messages, tools=[ADD], tool_choice="required", parallel_tool_calls=False,
            max_tokens=MAX, temperature=0,
        )
        call = r.choices[0].message.tool_calls[0]
        args = json.loads(call.arguments if hasattr(call, "arguments") else call.function.arguments)
        messages.append(r.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": args["a"] + args["b"]})})
        final = self.client.chat.completions.create(model=MODEL, messages=messages, tools=[ADD], max_tokens=48, temperature=0)
        self.assertIn(final.choices[0].finish_reason, ("stop", "length", "tool_calls"))
        m = final.choices[0].message
        self.assertTrue(m.content or m.tool_calls)


class Load(unittest.TestCase):
    def test_concurrent_streams_equal_alone(self):
        c = client()
        names = list(SCHEMAS)

        def request(i):
            args = dict(model=MODEL, messages=ask(names[i % len(names)]), max_tokens=40, temperature=0, stream=True)
            if i % 2 == 0:
                n = names[i % len(names)]
                args["response_format"] = {"type": "json_schema", "json_schema": {"name": n, "schema": SCHEMAS[n]}}
            else:
                args["messages"] = [{"role": "user", "content": f"Tell me a fact about the number {i}."}]
            return "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(**args) if ch.choices)

        alone = [request(i) for i in range(16)]
        with cf.ThreadPoolExecutor(16) as pool:
            together = list(pool.map(request, range(16)))
        self.assertEqual(together, alone)

    def test_pathological_schema_is_refused_while_a_stream_goes_on(self):
        c = client()
        pieces = []
        done = threading.Event()

        def stream():
            for ch in c.chat.completions.create(
                model=MODEL, messages=ask("story"), max_tokens=64, temperature=0, stream=True
            ):
                if ch.choices and ch.choices[0].delta.content:
                    pieces.append(ch.choices[0].delta.content)
            done.set()

        t = threading.Thread(target=stream)
        t.start()
        deep = {"type": "integer"}
        # 40 levels: past hearth's limit of 64 nested JSON levels, inside serde_json's parser limit of 128.
        for _ in range(40):
            deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
        bad = [
            ({"type": "json_schema", "json_schema": {"name": "deep", "schema": deep}}, "nested"),
            ({"type": "json_schema", "json_schema": {"name": "huge", "schema": {"enum": [f"value-{i:06d}-" * 4 for i in range(25_000)]}}}, "bytes"),
            ({"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "no-such-type"}}}, "no-such-type"),
        ]
        for rf, cause in bad:
            with self.assertRaises(openai.BadRequestError) as e:
                c.chat.completions.create(model=MODEL, messages=ask("thing"), max_tokens=8, response_format=rf)
            self.assertIn(cause, str(e.exception))
        t.join(timeout=300)
        self.assertTrue(done.is_set())
        self.assertGreater(len("".join(pieces)), 0)


if __name__ == "__main__":
    unittest.main()
