//! End-to-end pulls against a Hub-compatible server on 127.0.0.1 (tests/common): resume, verification, errors.

mod common;

use common::{make_gguf, sha256_hex, Behaviour, RepoFile, TestHub};
use hearth_store::{HubConfig, ProgressMode, PullOptions, Store, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const REPO: &str = "org/Tiny-GGUF";
const FILE: &str = "tiny-Q4_K_M.gguf";

fn one_file_repo(bytes: &[u8]) -> Behaviour {
    let mut b = Behaviour::default();
    b.repos.insert(
        REPO.into(),
        vec![
            RepoFile {
                path: FILE.into(),
                bytes: Arc::new(bytes.to_vec()),
            },
            RepoFile {
                path: "tiny-Q8_0.gguf".into(),
                bytes: Arc::new(make_gguf(99, 64)),
            },
        ],
    );
    b
}

fn opts(hub: &TestHub, token: Option<&str>) -> PullOptions {
    let mut h = HubConfig::new(&hub.endpoint(), token.map(str::to_string));
    h.read_timeout = Duration::from_secs(10);
    PullOptions {
        name: None,
        hub: h,
        progress: ProgressMode::Quiet,
        retry_delay: Some(Duration::from_millis(20)),
        report: None,
    }
}

fn blob_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn tmp_parts(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

#[test]
fn pull_follows_redirect_to_another_host_and_installs_the_verified_file() {
    let model = make_gguf(1, 64 << 10);
    let mut b = one_file_repo(&model);
    b.redirect = true;
    let (hub, _dir, store) = hub_and_store(b);
    let m = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, Some("sekrit")))
        .unwrap();
    assert_eq!(m.name, "tiny-q4_k_m");
    assert_eq!(m.files[0].sha256, sha256_hex(&model));
    assert_eq!(
        (m.architecture.as_str(), m.quant.as_str()),
        ("llama", "F32")
    );
    assert_eq!(m.context_length, Some(256));
    let r = store.resolve("tiny-q4_k_m").unwrap();
    assert_eq!(std::fs::read(&r.paths[0]).unwrap(), model);
    let log = hub.log();
    let cdn: Vec<_> = log.iter().filter(|l| l.port == hub.cdn_port).collect();
    assert_eq!(cdn.len(), 1, "{log:?}");
    assert_eq!(cdn[0].path, format!("/cdn/{REPO}/{FILE}"));
    // The token goes to the Hub only, never to the host it redirects to.
    assert!(cdn[0].auth.is_none(), "{log:?}");
    assert!(log
        .iter()
        .any(|l| l.port == hub.port && l.auth.as_deref() == Some("Bearer sekrit")));
    // A second pull finds the blob and downloads nothing.
    let before = hub.log().len();
    store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap();
    assert!(hub.log()[before..]
        .iter()
        .all(|l| l.path.starts_with("/api/")));
}

#[test]
fn cut_connection_resumes_with_a_range_request_and_right_sha256() {
    let model = make_gguf(2, 256 << 10); // ~1 MiB
    let mut b = one_file_repo(&model);
    b.redirect = true;
    b.cut_after = Some(300_000);
    b.cuts_left = 2; // cut twice: at 300000, then 300000 bytes into the resumed transfer
    let (hub, dir, store) = hub_and_store(b);
    let m = store
        .pull(&format!("hf://{REPO}:q4_k_m"), &opts(&hub, None))
        .unwrap();
    assert_eq!(m.files[0].sha256, sha256_hex(&model));
    let ranges: Vec<Option<String>> = hub
        .log()
        .iter()
        .filter(|l| l.port == hub.cdn_port)
        .map(|l| l.range.clone())
        .collect();
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=300000-".into()),
            Some("bytes=600000-".into())
        ]
    );
    assert_eq!(
        blob_names(dir.path()),
        vec![format!("sha256-{}", sha256_hex(&model))]
    );
    assert!(tmp_parts(dir.path()).is_empty());
}

#[test]
fn flipped_byte_is_detected_and_nothing_is_installed() {
    let model = make_gguf(3, 16 << 10);
    let mut b = one_file_repo(&model);
    b.corrupt = true;
    let (hub, dir, store) = hub_and_store(b);
    let err = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap_err();
    assert!(matches!(err, StoreError::ShaMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&sha256_hex(&model)) && msg.contains("nothing was installed"),
        "{msg}"
    );
    assert!(blob_names(dir.path()).is_empty());
    assert!(tmp_parts(dir.path()).is_empty());
    assert!(store.list().unwrap().0.is_empty());
    assert!(store.resolve("tiny-q4_k_m").is_err());
}

#[test]
fn missing_repository_is_a_clear_error() {
    let (hub, _dir, store) = hub_and_store(Behaviour::default());
    let err = store
        .pull("hf://nobody/nothing-GGUF", &opts(&hub, None))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::RepoNotFound { .. }), "{msg}");
    assert!(
        msg.contains("nobody/nothing-GGUF") && msg.contains("not found"),
        "{msg}"
    );
    // A missing file in an existing repository, and a missing quantization, name what is there.
    let hub = TestHub::start(one_file_repo(&make_gguf(4, 64)));
    let msg = store
        .pull(&format!("hf://{REPO}/nope.gguf"), &opts(&hub, None))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("nope.gguf") && msg.contains("not found"),
        "{msg}"
    );
    let msg = store
        .pull(&format!("hf://{REPO}:Q2_K"), &opts(&hub, None))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Q2_K") && msg.contains("Q4_K_M") && msg.contains("Q8_0"),
        "{msg}"
    );
}

#[test]
fn gated_repository_without_token_gets_a_clear_401_message() {
    let model = make_gguf(5, 1024);
    let mut b = one_file_repo(&model);
    b.gated.insert(REPO.into(), "good-token".into());
    let (hub, dir, store) = hub_and_store(b);
    let err = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains("401") && msg.contains("gated") && msg.contains("HF_TOKEN"),
        "{msg}"
    );
    let msg = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, Some("bad-token")))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("HF_TOKEN was refused"), "{msg}");
    assert!(blob_names(dir.path()).is_empty());
    let m = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, Some("good-token")))
        .unwrap();
    assert_eq!(m.files[0].sha256, sha256_hex(&model));
}

#[test]
fn interrupted_pull_leaves_the_store_usable_and_the_next_pull_resumes() {
    let model = make_gguf(6, 64 << 10);
    let (hub, dir, store) = hub_and_store(one_file_repo(&model));
    store
        .import(&write_tmp(&make_gguf(7, 64)), Some("other"))
        .unwrap();
    // What a pull killed after 100000 bytes leaves: the partial file and its (released) lock file.
    let sha = sha256_hex(&model);
    std::fs::write(
        dir.path().join(format!("tmp/{sha}.part")),
        &model[..100_000],
    )
    .unwrap();
    std::fs::write(dir.path().join(format!("tmp/{sha}.lock")), b"").unwrap();
    // The store is usable meanwhile.
    let (list, problems) = store.list().unwrap();
    assert_eq!(
        list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
    assert!(problems.is_empty());
    assert!(store
        .resolve("tiny-q4_k_m")
        .unwrap_err()
        .to_string()
        .contains("hearth pull"));
    let m = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap();
    assert_eq!(m.files[0].sha256, sha);
    let ranges: Vec<_> = hub.log().into_iter().filter_map(|l| l.range).collect();
    assert_eq!(ranges, ["bytes=100000-"]);
}

#[test]
fn a_partial_file_with_wrong_bytes_is_caught_by_the_sha256() {
    let model = make_gguf(8, 8 << 10);
    let (hub, dir, store) = hub_and_store(one_file_repo(&model));
    let sha = sha256_hex(&model);
    let mut junk = model[..5000].to_vec();
    junk[10] ^= 0xff;
    std::fs::write(dir.path().join(format!("tmp/{sha}.part")), &junk).unwrap();
    let err = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap_err();
    assert!(matches!(err, StoreError::ShaMismatch { .. }), "{err}");
    // The bad partial file is gone, so the next pull starts clean and succeeds.
    assert!(tmp_parts(dir.path()).is_empty());
    store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap();
}

#[test]
fn split_gguf_is_fetched_and_resolved_as_one_model() {
    let p1 = make_gguf(9, 1024);
    let p2 = make_gguf(10, 2048);
    let mut b = Behaviour::default();
    b.repos.insert(
        "org/Split-GGUF".into(),
        vec![
            RepoFile {
                path: "Q4_K_M/split-Q4_K_M-00002-of-00002.gguf".into(),
                bytes: Arc::new(p2.clone()),
            },
            RepoFile {
                path: "Q4_K_M/split-Q4_K_M-00001-of-00002.gguf".into(),
                bytes: Arc::new(p1.clone()),
            },
        ],
    );
    b.redirect = true;
    let (hub, _dir, store) = hub_and_store(b);
    let m = store
        .pull("hf://org/Split-GGUF", &opts(&hub, None))
        .unwrap();
    assert_eq!(m.name, "split-q4_k_m");
    let r = store.resolve("split-q4_k_m").unwrap();
    assert_eq!(r.paths.len(), 2);
    assert_eq!(std::fs::read(&r.paths[0]).unwrap(), p1);
    assert_eq!(std::fs::read(&r.paths[1]).unwrap(), p2);
    assert_eq!(m.size, (p1.len() + p2.len()) as u64);
}

#[test]
fn a_download_that_is_not_gguf_is_not_installed() {
    let mut b = Behaviour::default();
    b.repos.insert(
        "org/Bad-GGUF".into(),
        vec![RepoFile {
            path: "bad.gguf".into(),
            bytes: Arc::new(b"<html>not a model</html>".repeat(100)),
        }],
    );
    let (hub, dir, store) = hub_and_store(b);
    let err = store
        .pull("hf://org/Bad-GGUF", &opts(&hub, None))
        .unwrap_err();
    assert!(matches!(err, StoreError::Gguf { .. }), "{err}");
    assert!(blob_names(dir.path()).is_empty());
    assert!(tmp_parts(dir.path()).is_empty());
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written_outside_the_store() {
    let mut b = one_file_repo(&make_gguf(11, 64));
    b.repos.get_mut(REPO).unwrap().clear();
    for p in ["../../evil.gguf", "/etc/evil.gguf", "a/../../evil.gguf"] {
        b.extra_tree
            .push(serde_json::json!({"type": "file", "path": p, "size": 10,
            "lfs": {"oid": "00".repeat(32), "size": 10}}));
    }
    let hub = TestHub::start(b);
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("home");
    let store = Store::open(&root).unwrap();
    let err = store
        .pull(&format!("hf://{REPO}"), &opts(&hub, None))
        .unwrap_err();
    assert!(matches!(err, StoreError::NoGguf { .. }), "{err}");
    for name in ["../evil", "a/b", "/abs", "..", "a\\b"] {
        let mut o = opts(&hub, None);
        o.name = Some(name.into());
        assert!(
            matches!(
                store.pull("hf://org/x", &o),
                Err(StoreError::BadName { .. })
            ),
            "{name}"
        );
        assert!(matches!(
            store.import(Path::new("/nonexistent.gguf"), Some(name)),
            Err(StoreError::BadName { .. })
        ));
        assert!(store.remove(name).is_err());
    }
    for src in [
        "hf://../etc/x",
        "hf://org/repo/../../x.gguf",
        "hf://org/repo//x.gguf",
        "pypi://-r/etc/passwd",
    ] {
        assert!(
            matches!(
                store.pull(src, &opts(&hub, None)),
                Err(StoreError::BadSource { .. })
            ),
            "{src}"
        );
    }
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["home"]);
}

/// `bytes` in a temporary file, removed with the guard.
fn write_tmp(bytes: &[u8]) -> hearth_test_support::TempPath {
    let p = hearth_test_support::TempPath::new("store-import", "model.gguf");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn two_pulls_of_one_model_at_once_download_it_once() {
    let model = make_gguf(12, 64 << 10);
    let mut b = one_file_repo(&model);
    b.throttle = Some(Duration::from_millis(5));
    let hub = TestHub::start(b);
    let dir = tempfile::tempdir().unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let o = opts(&hub, None);
                let root = dir.path().to_path_buf();
                s.spawn(move || Store::open(root).unwrap().pull(&format!("hf://{REPO}"), &o))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r.as_ref().unwrap().files[0].sha256, sha256_hex(&model));
    }
    let downloads = hub
        .log()
        .iter()
        .filter(|l| l.path.contains("/resolve/"))
        .count();
    assert_eq!(downloads, 1);
    assert_eq!(blob_names(dir.path()).len(), 1);
    assert!(tmp_parts(dir.path()).is_empty());
}

#[test]
fn partial_downloads_are_listed_and_cleaned_unless_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    std::fs::write(dir.path().join(format!("tmp/{a}.part")), [0u8; 100]).unwrap();
    std::fs::write(dir.path().join(format!("tmp/{b}.part")), [0u8; 10]).unwrap();
    assert_eq!(store.partials().unwrap(), (2, 110));
    // `b` is being downloaded by another process (its lock is held).
    let held = std::fs::File::create(dir.path().join(format!("tmp/{b}.lock"))).unwrap();
    held.lock().unwrap();
    assert_eq!(store.clean_partials().unwrap(), (1, 100));
    drop(held);
    assert_eq!(store.clean_partials().unwrap(), (1, 10));
    assert_eq!(store.partials().unwrap(), (0, 0));
}

/// A hub behaving as `b`, and an empty store in a temporary directory.
fn hub_and_store(b: Behaviour) -> (TestHub, tempfile::TempDir, Store) {
    let hub = TestHub::start(b);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (hub, dir, store)
}

/// A first pull of `v1` interrupted for good after 100000 bytes (the server then fails every request), then the
/// server's file replaced by `v2` of the same size. Returns the hub and the store's directory.
fn interrupted_then_replaced(
    v1: &[u8],
    v2: &[u8],
    etag: bool,
) -> (TestHub, tempfile::TempDir, Store) {
    let mut b = one_file_repo(v1);
    b.no_lfs = true;
    b.etag = etag;
    b.cut_after = Some(100_000);
    b.cuts_left = 1;
    b.break_after_cut = true;
    let (hub, dir, store) = hub_and_store(b);
    let err = store
        .pull(&format!("hf://{REPO}/{FILE}"), &opts(&hub, None))
        .unwrap_err();
    assert!(err.to_string().contains("no progress"), "{err}");
    assert_eq!(tmp_parts(dir.path()).len(), 1);
    {
        let mut st = hub.state.lock().unwrap();
        st.broken = false;
        st.repos.get_mut(REPO).unwrap()[0].bytes = Arc::new(v2.to_vec());
        st.log.clear();
    }
    (hub, dir, store)
}

#[test]
fn a_resume_without_sha256_needs_the_server_to_prove_it_is_the_same_file() {
    let v1 = make_gguf(21, 64 << 10);
    let v2 = make_gguf(22, 64 << 10);
    assert_eq!(v1.len(), v2.len());
    let source = format!("hf://{REPO}/{FILE}");

    // The server changed the file and says so through its ETag: If-Range gets the whole new file, not a splice.
    let (hub, dir, store) = interrupted_then_replaced(&v1, &v2, true);
    let m = store.pull(&source, &opts(&hub, None)).unwrap();
    assert_eq!(m.files[0].sha256, sha256_hex(&v2));
    let log = hub.log();
    let asked: Vec<_> = log.iter().filter_map(|l| l.if_range.clone()).collect();
    assert_eq!(asked, [format!("\"{}\"", sha256_hex(&v1))]);
    assert!(tmp_parts(dir.path()).is_empty());

    // Same file, same ETag: the pull resumes where it stopped.
    let (hub, _dir, store) = interrupted_then_replaced(&v1, &v1, true);
    let m = store.pull(&source, &opts(&hub, None)).unwrap();
    assert_eq!(m.files[0].sha256, sha256_hex(&v1));
    let ranges: Vec<_> = hub.log().into_iter().filter_map(|l| l.range).collect();
    assert_eq!(ranges, ["bytes=100000-"]);

    // No validator and no sha256 (what a killed pull from such a server leaves): nothing proves the bytes belong
    // together, so the download starts over.
    let mut b = one_file_repo(&v2);
    b.no_lfs = true;
    let (hub, dir, store) = hub_and_store(b);
    let url = format!("{}/{REPO}/resolve/main/{FILE}", hub.endpoint());
    std::fs::write(
        dir.path()
            .join(format!("tmp/{}.part", sha256_hex(url.as_bytes()))),
        &v1[..100_000],
    )
    .unwrap();
    let m = store.pull(&source, &opts(&hub, None)).unwrap();
    assert_eq!(m.files[0].sha256, sha256_hex(&v2));
    let ranges: Vec<_> = hub.log().into_iter().filter_map(|l| l.range).collect();
    assert!(ranges.is_empty(), "{ranges:?}");
}

#[test]
fn a_reporter_hears_the_steps_and_the_transfer_up_to_the_whole_file() {
    let model = make_gguf(5, 64 << 10);
    let (hub, _dir, store) = hub_and_store(one_file_repo(&model));
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut o = opts(&hub, None);
    o.report = Some(hearth_store::Reporter(Arc::new(move |e| {
        sink.lock().unwrap().push(e)
    })));
    store.pull(&format!("hf://{REPO}"), &o).unwrap();
    let events = events.lock().unwrap().clone();
    use hearth_store::PullEvent::{Status, Transfer};
    assert_eq!(events.first(), Some(&Status("pulling manifest")));
    assert_eq!(events.last(), Some(&Status("writing manifest")));
    let transfers: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Transfer {
                file,
                sha256,
                completed,
                total,
            } => Some((file.clone(), sha256.clone(), *completed, *total)),
            Status(_) => None,
        })
        .collect();
    let n = model.len() as u64;
    assert_eq!(transfers.first().map(|t| t.2), Some(0));
    assert_eq!(
        transfers.last(),
        Some(&(FILE.to_string(), Some(sha256_hex(&model)), n, Some(n)))
    );
    assert!(transfers.windows(2).all(|w| w[0].2 <= w[1].2));
}

#[test]
fn a_pulled_model_answers_to_its_source_even_under_another_name() {
    let model = make_gguf(9, 4096);
    let (hub, _dir, store) = hub_and_store(one_file_repo(&model));
    let m = store
        .pull(&format!("hf://{REPO}:q4_k_m"), &opts(&hub, None))
        .unwrap();
    assert_eq!(m.name, "tiny-q4_k_m");
    assert_eq!(m.pulled_as, [format!("hf://{REPO}:Q4_K_M")]);
    let renamed = PullOptions {
        name: Some("mine".into()),
        ..opts(&hub, None)
    };
    let mine = store
        .pull(&format!("hf.co/{REPO}:Q4_K_M"), &renamed)
        .unwrap();
    assert_eq!(mine.pulled_as, [format!("hf://{REPO}:Q4_K_M")]);
    // A source names the model last pulled as it; each still answers to its own name.
    let source = format!("hf://{REPO}:Q4_K_M");
    for (asked, name) in [
        (source.as_str(), "mine"),
        ("mine", "mine"),
        ("tiny-q4_k_m", "tiny-q4_k_m"),
    ] {
        assert_eq!(store.resolve(asked).unwrap().name, name, "{asked}");
    }
    let again = store
        .pull(&format!("hf://{REPO}:q4_k_m"), &opts(&hub, None))
        .unwrap();
    assert_eq!(again.pulled_as, vec![source.clone()]);
    assert_eq!(store.find(&source).unwrap().name, "tiny-q4_k_m");
    assert_eq!(
        store.manifest("mine").unwrap().unwrap().pulled_as,
        Vec::<String>::new()
    );
}
