//! The tiny random-weight Qwen3 fixture (tests/fixtures/tiny/qwen3) converted to GGUF once per test process, with a
//! plain chat template: a model that loads and steps in milliseconds, for tests that need many requests or their
//! own copy of the file.

#![allow(dead_code)]

use hearth_convert::{convert, ConvertOptions, OutType};
use hearth_engine::batch::BatchConfig;
use hearth_engine::Model;
use hearth_server::{AppState, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const TEMPLATE: &str = "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + \
    '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}";

/// The tiny qwen3 with `TEMPLATE`, converted into `dir/tiny.gguf`.
pub fn tiny_gguf_in(dir: &Path) -> PathBuf {
    let src = hearth_test_support::tiny_with_template("qwen3", TEMPLATE);
    let out = dir.join("tiny.gguf");
    let opts = ConvertOptions {
        outtype: OutType::parse("f32").expect("f32"),
        ..Default::default()
    };
    convert(src.path(), &out, &opts).expect("converting the tiny qwen3");
    out
}

pub fn tiny_model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        // The file goes with its directory; the model's mapping keeps its bytes.
        let dir = hearth_test_support::temp_dir("tiny");
        Arc::new(Model::load(tiny_gguf_in(dir.path())).expect("loading the tiny qwen3"))
    })
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
