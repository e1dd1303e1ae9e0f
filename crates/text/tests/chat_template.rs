//! Chat templates: real GGUF templates render what Python Jinja2 renders (tests/data/template-expected.json, made by
//! scripts/template_reference.py), Gemma's built-in turn format, fuel, and the Python-compatible helpers.

mod common;

use hearth_gguf::Gguf;
use hearth_text::{ChatMessage, ChatTemplate, TemplateSource, TextError, Tokenizer};

fn expected() -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/template-expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).unwrap()
}

/// SmolLM2 (no BOS added by its tokenizer) and DeepSeek-R1-Distill-Qwen (its template writes BOS, its tokenizer
/// adds BOS, so the rendered text leaves BOS to the tokenizer) against Jinja2.
#[test]
fn real_templates_render_like_jinja2() {
    let exp = expected();
    let smollm = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let deepseek = Gguf::open_metadata_only(common::deepseek_header()).unwrap();
    let smollm_tok = Tokenizer::from_gguf(&smollm).unwrap();
    let deepseek_tok = Tokenizer::from_gguf(&deepseek).unwrap();
    let mut checked = 0;
    for c in exp["cases"].as_array().unwrap() {
        let (g, tok) = match c["model"].as_str().unwrap() {
            "smollm2-135m" => (&smollm, &smollm_tok),
            "deepseek-r1-distill-qwen-7b" => (&deepseek, &deepseek_tok),
            other => panic!("unknown model {other}"),
        };
        let t = ChatTemplate::from_gguf_with(g, tok).unwrap();
        assert_eq!(t.source(), TemplateSource::File);
        let msgs = messages(&exp["conversations"][c["conversation"].as_str().unwrap()]);
        let agp = c["add_generation_prompt"].as_bool().unwrap();
        let want = c["rendered"].as_str().unwrap();
        let bos = c["bos_token"].as_str().unwrap();
        let want = if tok.adds_bos() {
            want.strip_prefix(bos).unwrap_or(want)
        } else {
            want
        };
        assert_eq!(t.render(&msgs, agp).unwrap(), want, "{c}");
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn smollm2_system_user_is_chatml() {
    let g = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let t = ChatTemplate::from_gguf(&g).unwrap();
    let out = t
        .render(
            &[
                ChatMessage::new("system", "You are terse."),
                ChatMessage::new("user", "Hi"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// Gemma3's GGUF has no template: the built-in format (llama.cpp's "gemma"): no system turn, the system text goes
/// before the first user message, the assistant is "model", contents trimmed; BOS is left to the tokenizer.
#[test]
fn gemma3_builtin_format() {
    let g = Gguf::open(common::model_path("gemma3-270m")).unwrap();
    assert!(g.get_str("tokenizer.chat_template").unwrap().is_none());
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let t = ChatTemplate::from_gguf_with(&g, &tok).unwrap();
    assert_eq!(t.source(), TemplateSource::BuiltIn);
    let conv = [
        ChatMessage::new("system", "  Be brief. "),
        ChatMessage::new("user", "Hi there\n"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "Bye"),
    ];
    assert_eq!(
        t.render(&conv, true).unwrap(),
        "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n\
         <start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n\
         <start_of_turn>model\n"
    );
    assert_eq!(
        t.render(&[ChatMessage::new("user", "Hi")], false).unwrap(),
        "<start_of_turn>user\nHi<end_of_turn>\n"
    );
    // Encoded with BOS and special tokens parsed, the turn markers are single tokens.
    let ids = tok
        .encode(
            &t.render(&[ChatMessage::new("user", "Hi")], true).unwrap(),
            true,
            true,
        )
        .unwrap();
    assert_eq!(ids[0], tok.bos().unwrap());
    assert_eq!(tok.token_text(ids[1]), Some("<start_of_turn>"));
    assert!(tok.is_eog(tok.token_id("<end_of_turn>").unwrap()));
}

/// Hostile templates that make a huge string from a few instructions each end in a clear error while memory use
/// is still small: strings doubled in a loop with `~` and with `+` (minijinja 3.1 charges fuel for every byte an
/// operator builds, and checks that the fuel covers a result before allocating it), and a list that holds the
/// same list twice sixty levels deep, given to `tojson` (hearth's filter stops at the prompt limit).
#[test]
fn doubling_templates_end_in_clear_errors() {
    const DOUBLE: &str = "{% set ns = namespace(s='x') %}{% for i in range(200) %}";
    const NEST: &str =
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}\
                        {% endfor %}";
    for (src, want) in [
        (
            format!("{DOUBLE}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"),
            "fuel",
        ),
        (
            format!("{DOUBLE}{{% set ns.s = ns.s + ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"),
            "fuel",
        ),
        (
            format!("{NEST}{{{{ ns.l|tojson|length }}}}"),
            "exceeds 4194304 bytes",
        ),
        (
            format!("{NEST}{{{{ ns.l|tojson(indent=2)|length }}}}"),
            "exceeds 4194304 bytes",
        ),
        // A list doubled by `+`: lazy in minijinja until its chain is 32 deep, then materialised (2^33 slots,
        // an abort before the patch in third_party/minijinja asked for fuel per slot).
        (
            "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}\
             {{ ns.l|length }}"
                .to_string(),
            "fuel",
        ),
        (
            "{% macro f(l, n) %}{% if n > 0 %}{{ f(l + l, n - 1) }}{% else %}{{ l|length }}{% endif %}\
             {% endmacro %}{{ f([1], 60) }}"
                .to_string(),
            "fuel",
        ),
        // The self-nested list turned into a string: 2^60 items of text, formatted into one String before fuel
        // was charged (an abort); now bounded at 64 MiB of text per value.
        (format!("{NEST}{{{{ (ns.l ~ '')|length }}}}"), "too large"),
        (format!("{NEST}{{{{ ns.l|string|length }}}}"), "too large"),
        (format!("{NEST}{{{{ ns.l|replace('a', 'b')|length }}}}"), "too large"),
    ] {
        let t = ChatTemplate::new(&src, "", "").unwrap();
        match t.render(&[ChatMessage::new("user", "Hi")], true) {
            Err(TextError::Template(msg)) => assert!(msg.contains(want), "{src}: {msg}"),
            other => panic!("{src}: expected a template error, got {other:?}"),
        }
    }
}

#[test]
fn endless_template_runs_out_of_fuel() {
    let src =
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ b }}{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    let start = std::time::Instant::now();
    let err = t.render(&[], true).unwrap_err();
    assert!(
        start.elapsed().as_secs() < 30,
        "fuel should stop it quickly"
    );
    match err {
        TextError::Template(msg) => assert!(msg.to_lowercase().contains("fuel"), "{msg}"),
        other => panic!("expected a template error, got {other:?}"),
    }
    // Endless recursion is stopped too.
    let t = ChatTemplate::new(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "",
        "",
    )
    .unwrap();
    assert!(matches!(t.render(&[], false), Err(TextError::Template(_))));
}

#[test]
fn template_errors_are_errors() {
    assert!(matches!(
        ChatTemplate::new("{% for %}", "", ""),
        Err(TextError::Template(_))
    ));
    let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
    match t.render(&[], false) {
        Err(TextError::Template(m)) => assert!(m.contains("roles must alternate"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Expected strings are Python's: `json.dumps(x, ensure_ascii=False)` and friends.
#[test]
fn tojson_is_pythons() {
    let t = ChatTemplate::new(
        "{{ {'b': 1, 'a': [1.5, 'x<y>&\\'z', none, true], 'ü': 2.0} | tojson }}|\
         {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|\
         {{ [1, {'k': 'v'}] | tojson(indent=2) }}|\
         {{ 'é' | tojson(ensure_ascii=true) }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], false).unwrap(),
        "{\"b\": 1, \"a\": [1.5, \"x<y>&'z\", null, true], \"ü\": 2.0}|\
         {\"a\": 2, \"b\": 1}|\
         [\n  1,\n  {\n    \"k\": \"v\"\n  }\n]|\
         \"\\u00e9\""
    );
}

#[test]
fn python_methods_and_dates() {
    let t = ChatTemplate::new(
        "{{ '  a,b  '.strip().split(',') | join('+') }} {{ 'Hi'.upper() }} {{ 'x</think>y'.split('</think>')[-1] }} \
         {{ strftime_now('%Y') | length }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "a+b HI y 4");
}

#[test]
fn unknown_family_without_template_is_an_error() {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(20u64.to_le_bytes());
    b.extend(b"general.architecture");
    b.extend(8u32.to_le_bytes());
    b.extend(5u64.to_le_bytes());
    b.extend(b"mamba");
    let g = Gguf::from_bytes(b).unwrap();
    match ChatTemplate::from_gguf(&g) {
        Err(TextError::NoChatTemplate { arch }) => assert_eq!(arch, "mamba"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("an unknown family must not get a guessed format"),
    }
}
