//! `hearth bench MODEL --lookup`: prompt-lookup speculation on copy-heavy chat prompts (edit a code block, quote a
//! document, list ids from a world state) and one that copies nothing, generated greedily through the batch engine
//! with lookup off and on, alternating run by run; prints each prompt's generation rate both ways, their ratio,
//! the share of proposed tokens kept, and whether the two outputs are the same tokens (they must be).

use super::{mean_std, path_name, Args};
use anyhow::{bail, Result};
use hearth_engine::batch::{BatchConfig, Engine, Event, Lookup, Request};
use hearth_engine::Model;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// (name, user message) of each prompt.
const PROMPTS: [(&str, &str); 4] = [
    (
        "code edit",
        "Here is a Python module:\n\n```python\nimport json\n\n\ndef load_orders(path):\n    with open(path) as f:\n        \
         return json.load(f)\n\n\ndef order_total(order, tax_rate):\n    subtotal = 0\n    for item in order[\"items\"]:\n        \
         subtotal += item[\"price\"] * item[\"quantity\"]\n    discount = order.get(\"discount\", 0)\n    subtotal -= discount\n    \
         tax = subtotal * tax_rate\n    return round(subtotal + tax, 2)\n\n\ndef report(orders, tax_rate):\n    lines = []\n    \
         for order in orders:\n        total = order_total(order, tax_rate)\n        lines.append(f\"{order['id']}: {total}\")\n    \
         return \"\\n\".join(lines)\n```\n\nRewrite the whole module unchanged except that `tax_rate` is renamed to `rate` \
         everywhere.",
    ),
    (
        "document",
        "Read this notice:\n\nThe Mill Street library opens at 9 am on weekdays and at 10 am on Saturdays, and it is \
         closed on Sundays and public holidays. Members may borrow up to six books at a time for three weeks, and \
         may renew a loan twice online unless another member has reserved the book. Late returns cost 20 cents per \
         book per day, up to 5 dollars per book. Lost books are charged at their replacement price plus a 3 dollar \
         processing fee. The reading room on the first floor is reserved for quiet study.\n\nQuote, word for word, \
         the sentences about borrowing books and about late returns.",
    ),
    (
        "world ids",
        "World state:\nrobot_7f3a at dock_12 carrying crate_0091\nrobot_c21e at shelf_b4 idle\nrobot_9d05 at \
         charger_2 battery 35%\nrobot_41aa at shelf_a1 carrying crate_0107\nrobot_e6b2 at dock_03 idle\nrobot_5c90 \
         at shelf_c7 carrying crate_0044\n\nList every robot id with its location, one per line, as `id: location`.",
    ),
    (
        "no copy",
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    ),
];

/// Generates `prompt` greedily: (tokens, seconds from the first token to the last).
fn generate(engine: &Engine, prompt: &[u32], n_gen: usize) -> Result<(Vec<u32>, f64)> {
    let (tx, rx) = mpsc::channel();
    engine.submit(
        Request {
            prompt: prompt.to_vec(),
            max_tokens: n_gen,
            ..Default::default()
        },
        Box::new(tx),
    )?;
    let (mut ids, mut first, mut last) = (Vec::new(), None, None);
    for ev in rx {
        match ev {
            Event::Token(s) => {
                ids.push(s.id);
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
            }
            Event::Done { .. } => break,
            Event::Failed(m) => bail!("generation failed: {m}"),
        }
    }
    let secs = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    Ok((ids, secs))
}

pub fn run(a: &Args, model: Model) -> Result<ExitCode> {
    let n_gen = a.n_gen.iter().copied().find(|&n| n > 0).unwrap_or(128);
    let n_threads = a
        .threads
        .first()
        .copied()
        .unwrap_or_else(crate::common::ModelArgs::default_threads);
    let tok = hearth_text::Tokenizer::from_gguf(&model.gguf)?;
    let template = hearth_text::ChatTemplate::from_gguf_with(&model.gguf, &tok)?;
    let prompts: Vec<(&str, Vec<u32>)> = PROMPTS
        .iter()
        .map(|(name, text)| {
            let msg = [hearth_text::ChatMessage::new("user", *text)];
            Ok((
                *name,
                tok.encode(&template.render(&msg, true)?, false, true)?,
            ))
        })
        .collect::<Result<_>>()?;
    let n_ctx = prompts.iter().map(|p| p.1.len()).max().unwrap_or(0) + n_gen + 1;
    let model = Arc::new(model);
    let engine = |lookup| {
        Engine::start(
            model.clone(),
            BatchConfig {
                n_threads,
                n_ctx,
                // Every run reads its prompt again: the rate is generation's.
                prefix_cache_bytes: 0,
                kv_type: a.kv_type,
                lookup,
                ..BatchConfig::default()
            },
        )
    };
    let (off, on) = (
        engine(Lookup::OFF),
        engine(Lookup::with_max_draft(a.draft_max)),
    );
    let name = path_name(a.model.as_deref().unwrap_or_default());
    println!(
        "| model | threads | prompt | tokens | off t/s | on t/s | on / off | accepted | same |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut all_same = true;
    for (label, prompt) in &prompts {
        let (mut r_off, mut r_on) = (Vec::new(), Vec::new());
        let before = on.stats();
        let mut same = true;
        let mut n = 0;
        // Alternating, so that a change in the machine's load falls on both.
        for rep in 0..=a.repetitions {
            let (ids_off, s_off) = generate(&off, prompt, n_gen)?;
            let (ids_on, s_on) = generate(&on, prompt, n_gen)?;
            same &= ids_on == ids_off;
            n = ids_off.len();
            // Repetition 0 warms up.
            if rep > 0 {
                r_off.push(n.saturating_sub(1) as f64 / s_off.max(1e-9));
                r_on.push(ids_on.len().saturating_sub(1) as f64 / s_on.max(1e-9));
            }
        }
        let after = on.stats();
        let proposed = after.draft_tokens - before.draft_tokens;
        let kept = after.draft_accepted - before.draft_accepted;
        let ((fa, fs), (na, ns)) = (mean_std(&r_off), mean_std(&r_on));
        all_same &= same;
        println!(
            "| {name} | {n_threads} | {label} | {n} | {fa:.2} ± {fs:.2} | {na:.2} ± {ns:.2} | {:.2} | {kept}/{proposed} \
             ({:.0} %) | {} |",
            na / fa,
            100.0 * kept as f64 / proposed.max(1) as f64,
            if same { "yes" } else { "NO" }
        );
    }
    if !all_same {
        bail!("lookup changed the output");
    }
    Ok(ExitCode::SUCCESS)
}
