//! Prints generated world states, one JSON object per line, for `hearth act` and its measurements:
//! `cargo run -p hearth-act --example worlds -- [table|drone] [N] [SEED]` (default: table 300 1).

#[path = "../tests/common/worlds.rs"]
#[allow(dead_code)]
mod worlds;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("table", String::as_str);
    let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let states = match kind {
        "table" => worlds::table_top(seed, n),
        "drone" => worlds::drone_worlds(seed, n),
        other => {
            eprintln!("unknown world {other:?}: table or drone");
            std::process::exit(2);
        }
    };
    for w in states {
        println!("{w}");
    }
}
