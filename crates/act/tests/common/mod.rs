//! Shared by hearth-act's tests: model paths, the example action space, generated world states, and a check of
//! actions written independently of the grammar code (by what the example skills mean).

#![allow(dead_code, unused_imports)]

pub mod worlds;

use serde_json::Value;
use std::path::PathBuf;

pub use hearth_test_support::model_path;

/// `examples/act/<name>` in the repository.
pub fn example(name: &str) -> PathBuf {
    hearth_test_support::example(&format!("act/{name}"))
}

fn ids(world: &Value, list: &str, key: &str) -> Vec<Value> {
    world[list]
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().map(|o| o[key].clone()).collect())
}

fn keys(args: &Value) -> Vec<&str> {
    args.as_object()
        .map_or_else(Vec::new, |o| o.keys().map(String::as_str).collect())
}

fn number_in(v: &Value, lo: f64, hi: f64) -> bool {
    v.as_f64().is_some_and(|x| (lo..=hi).contains(&x))
}

/// Whether `action` is a valid table-top action in `world`: a known skill, exactly its arguments, and every
/// object or bin it names present in this world state.
pub fn table_action_ok(action: &Value, world: &Value) -> Result<(), String> {
    let args = &action["args"];
    let ok = match action["skill"].as_str() {
        Some("pick") => {
            keys(args) == ["object"] && ids(world, "objects", "id").contains(&args["object"])
        }
        Some("place") => keys(args) == ["bin"] && ids(world, "bins", "id").contains(&args["bin"]),
        Some("move_to") => {
            keys(args) == ["x", "y"]
                && number_in(&args["x"], -0.5, 0.5)
                && number_in(&args["y"], -0.5, 0.5)
        }
        Some("wait") => args.as_object().is_some_and(|o| o.is_empty()),
        _ => false,
    };
    let shape = action.as_object().is_some_and(|o| o.len() == 2);
    if ok && shape {
        Ok(())
    } else {
        Err(format!("{action} is not a valid action in {world}"))
    }
}

/// The same for the drone's action space.
pub fn drone_action_ok(action: &Value, world: &Value) -> Result<(), String> {
    let args = &action["args"];
    let ok = match action["skill"].as_str() {
        Some("fly_to") => {
            keys(args) == ["shelf", "height_m"]
                && ids(world, "shelves", "name").contains(&args["shelf"])
                && number_in(&args["height_m"], 0.5, 6.0)
        }
        Some("scan") => {
            keys(args) == ["sku"] && ids(world, "parcels", "sku").contains(&args["sku"])
        }
        Some("land") | Some("hover") => args.as_object().is_some_and(|o| o.is_empty()),
        _ => false,
    };
    if ok && action.as_object().is_some_and(|o| o.len() == 2) {
        Ok(())
    } else {
        Err(format!("{action} is not a valid action in {world}"))
    }
}
