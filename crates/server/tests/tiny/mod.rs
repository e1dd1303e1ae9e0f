//! The tiny random-weight Qwen3 fixture (tests/fixtures/tiny/qwen3) converted to GGUF once per test process, with a
//! plain chat template: a model that loads and steps in milliseconds, for tests that need many requests or their
//! own copy of the file.

#![allow(dead_code)]

use hearth_convert::{convert, ConvertOptions, OutType};
use hearth_engine::batch::BatchConfig;
use hearth_engine::Model;
use hearth_server::{AppState, ServerConfig};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

const TEMPLATE: &str = "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + \
    '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}";

/// A temporary directory of this process's own (removed by nobody: the OS cleans its temp dir).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-server-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The converted file.
pub fn tiny_gguf() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/qwen3");
        let dir = temp_dir("tiny");
        for e in std::fs::read_dir(&src).expect("tests/fixtures/tiny/qwen3") {
            let e = e.expect("dir entry");
            std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy fixture");
        }
        std::fs::write(dir.join("chat_template.jinja"), TEMPLATE).expect("write template");
        let out = dir.join("tiny.gguf");
        let opts = ConvertOptions {
            outtype: OutType::parse("f32").expect("f32"),
            ..Default::default()
        };
        convert(&dir, &out, &opts).expect("converting the tiny qwen3");
        out
    })
    .clone()
}

pub fn tiny_model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(tiny_gguf()).expect("loading the tiny qwen3")))
        .clone()
}

/// A small configuration: 256 positions, one compute thread.
pub fn tiny_config() -> ServerConfig {
    ServerConfig {
        batch: BatchConfig {
            n_threads: 1,
            n_ctx: 256,
            max_running: 4,
            max_queued: 16,
            ..BatchConfig::default()
        },
        ..ServerConfig::new("tiny")
    }
}

/// A fresh state (its own engine) over the shared tiny model.
pub fn tiny_state(config: ServerConfig) -> Arc<AppState> {
    AppState::new(tiny_model(), config).expect("starting the server state")
}
