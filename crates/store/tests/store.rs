//! The store without a network: import, list, resolve (names, paths, the old script's files), rm with shared
//! blobs. (The memory planner's figures against llama.cpp's are checked in hearth-server's tests, over the engine's shape.)

mod common;

use common::{make_gguf, sha256_hex};
use hearth_store::{Store, StoreError};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn import_list_resolve_and_rm_keeps_shared_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("h")).unwrap();
    let bytes = make_gguf(1, 512);
    let f = write(src.path(), "My-Model.Q8_0.gguf", &bytes);
    let a = store.import(&f, None).unwrap();
    assert_eq!(a.name, "my-model.q8_0");
    let b = store.import(&f, Some("second")).unwrap();
    assert_eq!(a.files, b.files);
    let (list, problems) = store.list().unwrap();
    assert!(problems.is_empty());
    assert_eq!(
        list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["my-model.q8_0", "second"]
    );
    assert_eq!(list[0].size, bytes.len() as u64);
    assert_eq!(list[0].architecture, "llama");
    let blob = store.resolve("second").unwrap().paths[0].clone();
    assert!(blob.ends_with(format!("sha256-{}", sha256_hex(&bytes))));
    // The blob is shared: removing one name keeps it, removing the last frees it.
    let r = store.remove("my-model.q8_0").unwrap();
    assert_eq!((r.freed, r.kept_shared), (0, 1));
    assert!(blob.is_file());
    let r = store.remove("second").unwrap();
    assert_eq!(r.freed, bytes.len() as u64);
    assert!(!blob.exists());
    assert!(matches!(
        store.remove("second"),
        Err(StoreError::NotInstalled(_))
    ));
}

#[test]
fn reinstalling_a_name_frees_the_blob_it_no_longer_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let one = write(dir.path(), "one.gguf", &make_gguf(2, 64));
    let two = write(dir.path(), "two.gguf", &make_gguf(3, 64));
    let old = store
        .resolve(&store.import(&one, Some("m")).unwrap().name)
        .unwrap()
        .paths[0]
        .clone();
    store.import(&two, Some("m")).unwrap();
    assert!(!old.exists());
    assert_eq!(
        std::fs::read(&store.resolve("m").unwrap().paths[0]).unwrap(),
        make_gguf(3, 64)
    );
}

#[test]
fn resolve_paths_names_old_script_files_and_missing_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A path is used as is.
    let f = write(dir.path(), "x.gguf", &make_gguf(4, 64));
    let r = store.resolve(f.to_str().unwrap()).unwrap();
    assert_eq!(r.paths, [f]);
    assert!(r.manifest.is_none());
    // The older fetch script's models/<name>.gguf is found by name, listed, and removable.
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    let legacy = write(
        &dir.path().join("models"),
        "smollm2-135m.gguf",
        &make_gguf(5, 64),
    );
    assert_eq!(store.resolve("smollm2-135m").unwrap().paths, [legacy]);
    assert_eq!(store.list().unwrap().0[0].name, "smollm2-135m");
    store.remove("smollm2-135m").unwrap();
    // A missing built-in says how to pull it; an unknown name says how to install one; a bad path says so.
    let msg = store.resolve("smollm2-135m").unwrap_err().to_string();
    assert!(msg.contains("hearth pull smollm2-135m"), "{msg}");
    let msg = store.resolve("nosuch").unwrap_err().to_string();
    assert!(
        msg.contains("hearth pull hf://") && msg.contains("hearth import"),
        "{msg}"
    );
    let msg = store.resolve("dir/nosuch.gguf").unwrap_err().to_string();
    assert!(msg.contains("no such file"), "{msg}");
    assert!(matches!(
        store.resolve("../x"),
        Err(StoreError::BadName { .. }) | Err(StoreError::NotInstalled(_))
    ));
}

#[test]
fn import_refuses_files_that_are_not_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("h")).unwrap();
    let mut truncated = make_gguf(6, 1024);
    truncated.truncate(truncated.len() - 100);
    for (name, bytes) in [("junk.gguf", b"hello".to_vec()), ("cut.gguf", truncated)] {
        let f = write(dir.path(), name, &bytes);
        let err = store.import(&f, None).unwrap_err();
        assert!(matches!(err, StoreError::Gguf { .. }), "{err}");
    }
    assert!(store.list().unwrap().0.is_empty());
}

#[test]
fn damaged_manifest_is_reported_and_cannot_point_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("manifests/evil.json"),
        r#"{"schema":1,"name":"evil","source":"x","files":[{"sha256":"../../../etc/passwd","size":1,"name":"x"}],
           "architecture":"llama","quant":"F32","context_length":null,"parameters":1,"size":1,"created":0}"#,
    )
    .unwrap();
    let err = store.resolve("evil").unwrap_err();
    assert!(matches!(err, StoreError::BadManifest { .. }), "{err}");
    let (list, problems) = store.list().unwrap();
    assert!(list.is_empty());
    assert_eq!(problems.len(), 1);
    store.remove("evil").unwrap();
}

#[test]
fn pulling_a_builtin_reuses_the_old_scripts_file_when_its_sha256_is_the_published_one() {
    let real = hearth_test_support::model_path("smollm2-135m");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    let legacy = dir.path().join("models/smollm2-135m.gguf");
    if std::fs::hard_link(&real, &legacy).is_err() {
        std::fs::copy(&real, &legacy).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let opts = hearth_store::PullOptions {
        progress: hearth_store::ProgressMode::Quiet,
        ..Default::default()
    };
    let m = store.pull("smollm2-135m", &opts).unwrap();
    // The sha256 published with the package (issue 2), not one computed by hearth.
    assert_eq!(
        m.files[0].sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(
        (m.architecture.as_str(), m.quant.as_str(), m.context_length),
        ("llama", "Q4_1", Some(8192))
    );
    let r = store.resolve("smollm2-135m").unwrap();
    assert!(r.manifest.is_some());
    assert!(
        legacy.is_file(),
        "the old file stays until the model is removed"
    );
}

#[test]
fn a_store_that_cannot_be_created_still_resolves_paths() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = write(dir.path(), "not-a-dir", b"x");
    let store = Store::open(blocker.join("home")).unwrap();
    let f = write(dir.path(), "m.gguf", &make_gguf(8, 64));
    assert_eq!(
        store.resolve(f.to_str().unwrap()).unwrap().paths,
        std::slice::from_ref(&f)
    );
    assert!(store.list().unwrap().0.is_empty());
    assert!(store
        .resolve("smollm2-135m")
        .unwrap_err()
        .to_string()
        .contains("hearth pull"));
    assert!(matches!(
        store.import(&f, Some("m")),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn an_import_killed_midway_leaves_parts_that_are_listed_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tmp = dir.path().join("tmp");
    // What `hearth import` killed mid-copy leaves (its lock released with the process), and one still running.
    std::fs::write(tmp.join("import-4000001-0.part"), [0u8; 100]).unwrap();
    std::fs::write(tmp.join("import-4000001-1.part"), [0u8; 20]).unwrap();
    std::fs::write(tmp.join("import-4000002-0.part"), [0u8; 7]).unwrap();
    let running = std::fs::File::create(tmp.join("import-4000002.lock")).unwrap();
    running.lock().unwrap();
    // Not an import's part: left alone.
    std::fs::write(tmp.join("import-notes.part"), [0u8; 3]).unwrap();
    assert_eq!(store.partials().unwrap(), (3, 127));
    assert_eq!(store.clean_partials().unwrap(), (2, 120));
    assert!(tmp.join("import-4000002-0.part").exists());
    drop(running);
    assert_eq!(store.clean_partials().unwrap(), (1, 7));
    let mut left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["import-notes.part"]);
    // A finished import leaves nothing in tmp/.
    let src = tempfile::tempdir().unwrap();
    let f = write(src.path(), "m.gguf", &make_gguf(3, 64));
    store.import(&f, None).unwrap();
    assert_eq!(store.partials().unwrap(), (0, 0));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
}

/// Rewrites the manifest of `name` with `edit` (what a pull of `source` records).
fn edit_manifest(root: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = root.join("manifests").join(format!("{name}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn a_model_answers_to_the_source_it_was_pulled_as() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let f = write(dir.path(), "g.gguf", &make_gguf(5, 64));
    // What `hearth pull hf://acme/gemma-test:Q4_K_M` installs: gemma-test-q4_k_m, from the file it picked.
    store.import(&f, Some("gemma-test-q4_k_m")).unwrap();
    edit_manifest(dir.path(), "gemma-test-q4_k_m", |m| {
        m["source"] = "hf://acme/gemma-test/gemma-test-Q4_K_M.gguf".into();
        m["pulled_as"] = serde_json::json!(["hf://acme/gemma-test:Q4_K_M"]);
    });
    // Renamed at pull time (`--name mine`): only the recorded source finds it.
    store.import(&f, Some("mine")).unwrap();
    edit_manifest(dir.path(), "mine", |m| {
        m["source"] = "hf://acme/other-GGUF/other-Q8_0.gguf".into();
        m["pulled_as"] = serde_json::json!(["hf://acme/other-GGUF:Q8_0"]);
    });
    for (asked, name) in [
        ("hf://acme/gemma-test:Q4_K_M", "gemma-test-q4_k_m"),
        ("hf.co/acme/gemma-test:q4_k_m", "gemma-test-q4_k_m"),
        (
            "https://huggingface.co/acme/gemma-test:Q4_K_M",
            "gemma-test-q4_k_m",
        ),
        ("gemma-test-q4_k_m", "gemma-test-q4_k_m"),
        ("hf://acme/other-GGUF:Q8_0", "mine"),
    ] {
        assert_eq!(store.find(asked).unwrap().name, name, "{asked}");
        assert_eq!(store.resolve(asked).unwrap().name, name, "{asked}");
    }
    // A manifest from before sources were recorded: found by the name pull gives and the repository it came from.
    edit_manifest(dir.path(), "gemma-test-q4_k_m", |m| {
        m.as_object_mut().unwrap().remove("pulled_as");
    });
    assert_eq!(
        store.find("hf://acme/gemma-test:Q4_K_M").unwrap().name,
        "gemma-test-q4_k_m"
    );
    // Not installed: a clear error that says how to install it, for a source as for a name.
    for asked in [
        "hf://acme/gemma-test:Q8_0",
        "hf://acme/nothing",
        "pypi://nothing",
    ] {
        match store.resolve(asked) {
            Err(StoreError::NotInstalled(m)) => assert!(m.contains("hearth pull"), "{m}"),
            other => panic!("{asked}: {other:?}"),
        }
    }
    assert_eq!(
        hearth_store::source_key("hf.co/acme/gemma-test:q4_k_m").as_deref(),
        Some("hf://acme/gemma-test:Q4_K_M")
    );
    assert_eq!(hearth_store::source_key("gemma-test-q4_k_m"), None);
}
