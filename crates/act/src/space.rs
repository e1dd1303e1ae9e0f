//! [`ActionSpace`]: what a machine can do — an instruction, skills with JSON Schema parameters, and a fallback
//! action — read from the JSON file a user writes, checked, and turned each step into the grammar of the actions
//! possible in the world as it is now (`"enum": "$world:/objects/*/id"` becomes the ids present).
//!
//! An action is `{"skill": NAME, "args": {…}}`. The grammar is an llguidance Lark grammar that spells exactly that
//! object (keys in that order, `", "` and `": "` separators) with each skill's arguments as a nested `%json` schema.

use crate::pointer::Pointer;
use crate::ActError;
use serde_json::{Map, Value};
use std::path::Path;

/// The prefix that marks an `enum` as taken from the world state.
pub const WORLD_PREFIX: &str = "$world:";
/// Bytes an action space file may have.
pub const MAX_SPACE_BYTES: usize = 1 << 20;

/// A checked action space. Build it with [`ActionSpace::from_json`] or [`ActionSpace::load`].
#[derive(Debug, Clone)]
pub struct ActionSpace {
    /// The file as written (it goes into episode logs).
    source: Value,
    instruction: String,
    skills: Vec<Skill>,
    fallback: Value,
}

#[derive(Debug, Clone)]
struct Skill {
    name: String,
    description: String,
    parameters: Value,
    /// Every `"enum": "$world:…"` in `parameters`: where it sits (a plain JSON Pointer into `parameters`) and the
    /// pointer into the world state its values come from.
    holes: Vec<(String, Pointer)>,
}

/// The grammar of one step: the Lark source and the skills it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct StepGrammar {
    pub lark: String,
    pub offered: Vec<String>,
}

impl ActionSpace {
    /// Reads and checks an action space file (see [`ActionSpace::from_json`]).
    pub fn load(path: &Path) -> Result<ActionSpace, ActError> {
        let bytes = std::fs::read(path).map_err(|e| ActError::Io {
            what: format!("cannot read the action space {}", path.display()),
            source: e,
        })?;
        if bytes.len() > MAX_SPACE_BYTES {
            return Err(ActError::Space(format!(
                "{} is {} bytes; an action space may have at most {MAX_SPACE_BYTES}",
                path.display(),
                bytes.len()
            )));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ActError::Space(format!("{} is not JSON: {e}", path.display())))?;
        ActionSpace::from_json(v)
    }

    /// Checks the shape of an action space: a non-empty `instruction`, `skills` with unique names (letters,
    /// digits, `_`, `-`, `.`), a `description` and an object schema as `parameters` (absent: no arguments), and a
    /// `fallback` action naming a skill whose parameters take nothing from the world (the fallback must be valid in
    /// every world state). Whether the schemas compile and the fallback fits its skill is checked against a model's
    /// vocabulary when an [`Actor`](crate::Actor) starts.
    pub fn from_json(source: Value) -> Result<ActionSpace, ActError> {
        let bad = ActError::Space;
        let obj = source
            .as_object()
            .ok_or_else(|| bad("an action space must be a JSON object".into()))?;
        let instruction = obj
            .get("instruction")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| bad("'instruction' must be a non-empty string".into()))?
            .to_string();
        let list = obj
            .get("skills")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("'skills' must be a non-empty array".into()))?;
        let mut skills: Vec<Skill> = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let skill = Skill::from_json(s).map_err(|m| bad(format!("skills[{i}]: {m}")))?;
            if skills.iter().any(|k| k.name == skill.name) {
                return Err(bad(format!(
                    "skills[{i}]: the name {:?} is used twice",
                    skill.name
                )));
            }
            skills.push(skill);
        }
        let fallback = obj
            .get("fallback")
            .ok_or_else(|| bad("'fallback' (the action taken when the model cannot finish in time) is required".into()))?
            .clone();
        let space = ActionSpace {
            instruction,
            skills,
            fallback,
            source,
        };
        space.fallback_skill()?;
        Ok(space)
    }

    /// The file as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    pub fn fallback(&self) -> &Value {
        &self.fallback
    }

    /// Skill names, in the file's order.
    pub fn skill_names(&self) -> impl Iterator<Item = &str> {
        self.skills.iter().map(|s| s.name.as_str())
    }

    /// The fallback's skill, checked to exist, to take nothing from the world, and to have an object `args`.
    fn fallback_skill(&self) -> Result<&Skill, ActError> {
        let bad = |m: String| ActError::Space(format!("'fallback' is not a valid action: {m}"));
        let f = self
            .fallback
            .as_object()
            .ok_or_else(|| bad("it must be {\"skill\": NAME, \"args\": {…}}".into()))?;
        if let Some(k) = f.keys().find(|k| *k != "skill" && *k != "args") {
            return Err(bad(format!(
                "unknown key {k:?} (an action has 'skill' and 'args')"
            )));
        }
        let name = f
            .get("skill")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("'skill' must be a skill's name".into()))?;
        let skill = self
            .skills
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| bad(format!("there is no skill {name:?}")))?;
        if !f.get("args").is_some_and(Value::is_object) {
            return Err(bad("'args' must be an object".into()));
        }
        if let Some((_, p)) = skill.holes.first() {
            return Err(bad(format!(
                "its skill {name:?} takes values from the world ({WORLD_PREFIX}{}), so it could be invalid in \
                 some world state; a fallback's skill must not",
                p.as_str()
            )));
        }
        Ok(skill)
    }

    /// The text of the fallback action as the grammar spells it (its `args` keys in the schema's order).
    pub(crate) fn fallback_text(&self) -> Result<String, ActError> {
        let skill = self.fallback_skill()?;
        let args = ordered_like(&self.fallback["args"], &skill.parameters);
        Ok(action_text(&skill.name, &args))
    }

    /// The grammar of the fallback's skill alone (to check the fallback against it).
    pub(crate) fn fallback_grammar(&self) -> Result<String, ActError> {
        let skill = self.fallback_skill()?;
        Ok(lark(&[(skill.name.as_str(), &skill.parameters)]))
    }

    /// The system prompt: the instruction and every skill; the same at every step (the engine's prefix cache then
    /// reuses its KV), so it shows where `$world` values come from rather than the values.
    pub fn system_prompt(&self) -> String {
        let mut s = self.instruction.trim().to_string();
        s.push_str("\n\nSkills:\n");
        for k in &self.skills {
            s.push_str(&format!("- {}: {}", k.name, k.description.trim()));
            s.push_str(&format!(" Arguments: {}\n", compact(&k.parameters)));
        }
        s.push_str(&format!(
            "\nAn enum written \"{WORLD_PREFIX}/path\" takes the values found at that path of the world state \
             (* is every element of a list). Answer with one action as JSON: {{\"skill\": <name>, \"args\": \
             <arguments>}}."
        ));
        s
    }

    /// The grammar of the actions possible in `world`: every `$world` enum replaced by the values found there; a
    /// skill with an empty enum is left out. Errors when a pointer's path does not exist in `world`, or no skill
    /// is left (cannot happen while the fallback's skill takes nothing from the world).
    pub fn step_grammar(&self, world: &Value) -> Result<StepGrammar, ActError> {
        let mut parts: Vec<(&str, Value)> = Vec::with_capacity(self.skills.len());
        'skills: for k in &self.skills {
            let mut params = k.parameters.clone();
            for (at, ptr) in &k.holes {
                let mut values: Vec<Value> = Vec::new();
                for v in ptr.resolve(world).map_err(ActError::World)? {
                    if !values.contains(v) {
                        values.push(v.clone());
                    }
                }
                if values.is_empty() {
                    continue 'skills;
                }
                if let Some(slot) = params.pointer_mut(at) {
                    *slot = Value::Array(values);
                }
            }
            parts.push((k.name.as_str(), params));
        }
        if parts.is_empty() {
            return Err(ActError::World(
                "no skill is possible in this world state".into(),
            ));
        }
        let offered = parts.iter().map(|(n, _)| n.to_string()).collect();
        let refs: Vec<(&str, &Value)> = parts.iter().map(|(n, p)| (*n, p)).collect();
        Ok(StepGrammar {
            lark: lark(&refs),
            offered,
        })
    }

    /// The grammar with every `$world` enum replaced by one placeholder value (to check that the schemas compile).
    pub(crate) fn probe_grammar(&self) -> String {
        let parts: Vec<(&str, Value)> = self
            .skills
            .iter()
            .map(|k| {
                let mut p = k.parameters.clone();
                for (at, _) in &k.holes {
                    if let Some(slot) = p.pointer_mut(at) {
                        *slot = Value::Array(vec![Value::String("x".into())]);
                    }
                }
                (k.name.as_str(), p)
            })
            .collect();
        let refs: Vec<(&str, &Value)> = parts.iter().map(|(n, p)| (*n, p)).collect();
        lark(&refs)
    }

    /// Each skill's own grammar (with placeholder values), to name the skill whose schema does not compile.
    pub(crate) fn skill_probes(&self) -> Vec<(String, String)> {
        self.skills
            .iter()
            .map(|k| {
                let mut p = k.parameters.clone();
                for (at, _) in &k.holes {
                    if let Some(slot) = p.pointer_mut(at) {
                        *slot = Value::Array(vec![Value::String("x".into())]);
                    }
                }
                (k.name.clone(), lark(&[(k.name.as_str(), &p)]))
            })
            .collect()
    }
}

impl Skill {
    fn from_json(v: &Value) -> Result<Skill, String> {
        let o = v.as_object().ok_or("a skill must be an object")?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or("'name' must be a string")?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !name_ok {
            return Err(format!(
                "the name {name:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
            ));
        }
        let description = match o.get("description") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("skill {name:?}: 'description' must be a string")),
        };
        let parameters = match o.get("parameters") {
            None | Some(Value::Null) => {
                serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false})
            }
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(format!(
                    "skill {name:?}: 'parameters' must be a JSON Schema object"
                ))
            }
        };
        if parameters.get("type").is_some_and(|t| t != "object") {
            return Err(format!(
                "skill {name:?}: 'parameters' must describe an object (\"type\": \"object\")"
            ));
        }
        let mut holes = Vec::new();
        find_holes(&parameters, String::new(), &mut holes)
            .map_err(|m| format!("skill {name:?}: {m}"))?;
        Ok(Skill {
            name: name.to_string(),
            description,
            parameters,
            holes,
        })
    }
}

/// Every `"enum": "$world:POINTER"` under `v` (whose location is `at`); a `$world:` string anywhere else is an
/// error, so a typo does not silently become a constant.
fn find_holes(v: &Value, at: String, out: &mut Vec<(String, Pointer)>) -> Result<(), String> {
    // Iterative, so that a deeply nested schema cannot overflow the stack (its depth is checked when compiling).
    let mut stack = vec![(v, at, None::<&str>)];
    while let Some((v, at, key)) = stack.pop() {
        match v {
            Value::String(s) if s.starts_with(WORLD_PREFIX) => {
                if key != Some("enum") {
                    return Err(format!(
                        "{s:?} at {at}: only an \"enum\" can take its values from the world state"
                    ));
                }
                let p = Pointer::parse(&s[WORLD_PREFIX.len()..])
                    .map_err(|e| format!("at {at}: {e}"))?;
                out.push((at, p));
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    stack.push((x, format!("{at}/{i}"), None));
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    let esc = k.replace('~', "~0").replace('/', "~1");
                    stack.push((x, format!("{at}/{esc}"), Some(k.as_str())));
                }
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(())
}

/// The Lark grammar of `{"skill": NAME, "args": ARGS}` over `skills` (name, parameters schema).
fn lark(skills: &[(&str, &Value)]) -> String {
    let mut alts = Vec::with_capacity(skills.len());
    let mut rules = String::new();
    for (i, (name, params)) in skills.iter().enumerate() {
        alts.push(format!("s{i}"));
        // Names are letters, digits and `_-.` (checked), so they need no escaping in Lark or JSON.
        rules.push_str(&format!("s{i}: \"\\\"{name}\\\", \\\"args\\\": \" a{i}\n"));
        rules.push_str(&format!(
            "a{i}: %json {}\n",
            compact(&with_json_options(params))
        ));
    }
    format!(
        "start: \"{{\\\"skill\\\": \" ({}) \"}}\"\n{rules}",
        alts.join(" | ")
    )
}

fn with_json_options(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.entry("x-guidance")
            .or_insert_with(hearth_constraint::json_options);
    }
    s
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `{"skill": NAME, "args": ARGS}` as the grammar spells it.
fn action_text(name: &str, args: &Value) -> String {
    format!("{{\"skill\": \"{name}\", \"args\": {}}}", spaced(args))
}

/// JSON with Python's `json.dumps` separators (`", "`, `": "`), as hearth's JSON grammars write it.
pub(crate) fn spaced(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `args` with its keys in the order `schema`'s `properties` lists them (then any others), as the grammar writes
/// them.
fn ordered_like(args: &Value, schema: &Value) -> Value {
    let (Some(a), Some(props)) = (
        args.as_object(),
        schema.get("properties").and_then(Value::as_object),
    ) else {
        return args.clone();
    };
    let mut out = Map::new();
    for k in props.keys() {
        if let Some(v) = a.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in a {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space() -> Value {
        json!({
            "instruction": "Tidy the table.",
            "skills": [
                {"name": "pick", "description": "Pick an object up.", "parameters": {"type": "object",
                  "properties": {"object": {"enum": "$world:/objects/*/id"}}, "required": ["object"],
                  "additionalProperties": false}},
                {"name": "wait", "description": "Do nothing."}
            ],
            "fallback": {"skill": "wait", "args": {}}
        })
    }

    #[test]
    fn world_enums_are_filled_and_empty_ones_drop_the_skill() {
        let s = ActionSpace::from_json(space()).unwrap();
        let g = s
            .step_grammar(&json!({"objects": [{"id": "cube"}, {"id": "ball"}, {"id": "cube"}]}))
            .unwrap();
        assert_eq!(g.offered, ["pick", "wait"]);
        assert!(g.lark.contains(r#""enum":["cube","ball"]"#), "{}", g.lark);
        let g = s.step_grammar(&json!({"objects": []})).unwrap();
        assert_eq!(g.offered, ["wait"]);
        let e = s.step_grammar(&json!({"things": []})).unwrap_err();
        assert!(e.to_string().contains("no key \"objects\""), "{e}");
    }

    #[test]
    fn bad_spaces_are_refused_with_the_reason() {
        let cases: [(&str, Value, &str); 6] = [
            (
                "/skills/0/name",
                json!("pick up"),
                "must be 1 to 64 letters",
            ),
            ("/skills/1/name", json!("pick"), "used twice"),
            (
                "/fallback",
                json!({"skill": "fly", "args": {}}),
                "no skill \"fly\"",
            ),
            (
                "/fallback",
                json!({"skill": "pick", "args": {"object": "x"}}),
                "takes values from the world",
            ),
            (
                "/fallback",
                json!({"skill": "wait"}),
                "'args' must be an object",
            ),
            (
                "/skills/0/parameters/properties/object/const",
                json!("$world:/x"),
                "only an \"enum\"",
            ),
        ];
        for (at, v, want) in cases {
            let mut s = space();
            set(&mut s, at, v);
            let e = ActionSpace::from_json(s).unwrap_err().to_string();
            assert!(e.contains(want), "{at}: {e}");
        }
    }

    fn set(doc: &mut Value, at: &str, v: Value) {
        let (parent, key) = at.rsplit_once('/').unwrap();
        match doc.pointer_mut(parent).unwrap() {
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = v,
            Value::Object(o) => {
                o.insert(key.into(), v);
            }
            _ => panic!("{at}"),
        }
    }

    #[test]
    fn actions_are_spelled_as_the_grammar_spells_them() {
        let s = ActionSpace::from_json(space()).unwrap();
        assert_eq!(
            s.fallback_text().unwrap(),
            r#"{"skill": "wait", "args": {}}"#
        );
        let schema = json!({"properties": {"b": {}, "a": {}}});
        let args = ordered_like(&json!({"a": [1, 2], "b": {"x": 1}}), &schema);
        assert_eq!(spaced(&args), r#"{"b": {"x": 1}, "a": [1, 2]}"#);
    }
}
