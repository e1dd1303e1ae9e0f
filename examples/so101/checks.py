"""Checks of what the controller receives, written apart from hearth: an action is valid for a world state when it
names a skill of the action space that the world offers, with arguments that satisfy the skill's schema after every
`"enum": "$world:POINTER"` is replaced by the values found in that world state.

Only the schema keywords the examples use are understood; any other raises `Unsupported`, so a check never passes
by ignoring part of a schema.
"""

WORLD_PREFIX = "$world:"


class Unsupported(Exception):
    pass


def resolve(pointer: str, world):
    """The values at a JSON Pointer where `*` matches every array element; KeyError when the path is missing."""
    values = [world]
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        out = []
        for v in values:
            if key == "*":
                if not isinstance(v, list):
                    raise KeyError(pointer)
                out.extend(v)
            elif isinstance(v, dict) and key in v:
                out.append(v[key])
            elif isinstance(v, list) and key.isdigit() and int(key) < len(v):
                out.append(v[int(key)])
            else:
                raise KeyError(pointer)
        values = out
    return values


def _bind(schema, world):
    """The schema with its `$world` enums filled in; None when one comes out empty (the skill is not offered)."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "enum" and isinstance(v, str) and v.startswith(WORLD_PREFIX):
                values = resolve(v[len(WORLD_PREFIX) :], world)
                if not values:
                    return None
                out[k] = values
            else:
                bound = _bind(v, world)
                if bound is None and v is not None:
                    return None
                out[k] = bound
        return out
    if isinstance(schema, list):
        bound = [_bind(v, world) for v in schema]
        return None if any(b is None and v is not None for b, v in zip(bound, schema)) else bound
    return schema


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
}
_KNOWN = {"type", "properties", "required", "additionalProperties", "enum", "minimum", "maximum", "description"}


def _satisfies(value, schema) -> bool:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise Unsupported(f"schema keywords {sorted(unknown)}")
    if "type" in schema and not _TYPES[schema["type"]](value):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    if "maximum" in schema and value > schema["maximum"]:
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties", True) is False and any(k not in props for k in value):
            return False
        return all(_satisfies(v, props[k]) for k, v in value.items() if k in props)
    return True


def action_problem(space: dict, world: dict, action) -> str | None:
    """None when `action` is valid for `world`, else what is wrong with it."""
    if not isinstance(action, dict) or set(action) != {"skill", "args"}:
        return f"not {{skill, args}}: {action!r}"
    skill = next((s for s in space["skills"] if s["name"] == action["skill"]), None)
    if skill is None:
        return f"no skill {action['skill']!r}"
    try:
        schema = _bind(skill["parameters"], world)
    except KeyError as e:
        return f"the world has no {e.args[0]}"
    if schema is None:
        return f"{action['skill']!r} is not offered in this world state"
    if not _satisfies(action["args"], schema):
        return f"args {action['args']!r} do not fit {schema!r}"
    return None
