//! World states for tests and measurements: a table top seen by a camera, step after step — objects with ids,
//! colours, shapes and positions that appear (put down by a person) and disappear (picked, knocked over) between
//! steps, sometimes none at all; bins; the gripper and what it holds. Deterministic for a seed (xorshift).
//!
//! Also a second, unrelated world (a warehouse drone: shelves, parcels, a battery) for the action space that tests
//! generate at run time.

use serde_json::{json, Value};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [lo, hi), rounded to centimetres.
    pub fn coord(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo + u * (hi - lo)) * 100.0).round() / 100.0
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

const COLORS: [&str; 6] = ["red", "green", "blue", "yellow", "white", "black"];
const SHAPES: [&str; 4] = ["cube", "ball", "cup", "block"];

/// `n` consecutive table-top world states.
pub fn table_top(seed: u64, n: usize) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let mut made = 0usize;
    let mut objects: Vec<Value> = Vec::new();
    let mut holding: Value = Value::Null;
    let bins = json!([
        {"id": "bin_left", "color": "grey", "pos": [-0.4, 0.3]},
        {"id": "bin_right", "color": "blue", "pos": [0.4, 0.3]}
    ]);
    let mut new_object = |rng: &mut Rng| {
        made += 1;
        let (c, s) = (
            COLORS[rng.below(COLORS.len())],
            SHAPES[rng.below(SHAPES.len())],
        );
        json!({"id": format!("{c}_{s}_{made}"), "color": c, "shape": s,
               "pos": [rng.coord(-0.3, 0.3), rng.coord(-0.2, 0.2)]})
    };
    for _ in 0..3 {
        objects.push(new_object(&mut rng));
    }
    let mut out = Vec::with_capacity(n);
    for t in 0..n {
        // Between steps: objects disappear and appear; now and then the table is cleared.
        if !objects.is_empty() && rng.chance(0.3) {
            let i = rng.below(objects.len());
            let gone = objects.remove(i);
            if holding.is_null() && rng.chance(0.5) {
                holding = gone["id"].clone();
            }
        }
        if objects.len() < 6 && rng.chance(0.35) {
            objects.push(new_object(&mut rng));
        }
        if rng.chance(0.03) {
            objects.clear();
        }
        if !holding.is_null() && rng.chance(0.25) {
            holding = Value::Null;
        }
        for o in objects.iter_mut() {
            if rng.chance(0.2) {
                o["pos"] = json!([rng.coord(-0.3, 0.3), rng.coord(-0.2, 0.2)]);
            }
        }
        out.push(json!({
            "t": t,
            "objects": objects.clone(),
            "bins": bins.clone(),
            "gripper": {"holding": holding.clone(), "open": holding.is_null(),
                        "pos": [rng.coord(-0.3, 0.3), rng.coord(-0.2, 0.2)]},
        }));
    }
    out
}

/// The warehouse drone's action space (generated at run time, not in the repository).
pub fn drone_space() -> Value {
    json!({
        "instruction": "You fly a warehouse drone. Scan parcels that still need scanning, fly to shelves to reach \
                        them, and land to charge when the battery is low.",
        "skills": [
            {"name": "fly_to", "description": "Fly to a shelf.",
             "parameters": {"type": "object", "properties": {
                 "shelf": {"enum": "$world:/shelves/*/name"},
                 "height_m": {"type": "number", "minimum": 0.5, "maximum": 6}},
               "required": ["shelf", "height_m"], "additionalProperties": false}},
            {"name": "scan", "description": "Scan a parcel's label.",
             "parameters": {"type": "object", "properties": {"sku": {"enum": "$world:/parcels/*/sku"}},
               "required": ["sku"], "additionalProperties": false}},
            {"name": "land", "description": "Land on the charging pad."},
            {"name": "hover", "description": "Stay where you are."}
        ],
        "fallback": {"skill": "hover", "args": {}}
    })
}

/// `n` consecutive drone world states: parcels appear and leave, shelves come and go out of view.
pub fn drone_worlds(seed: u64, n: usize) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let mut parcels: Vec<Value> = Vec::new();
    let mut made = 0usize;
    let mut battery: f64 = 0.9;
    let mut out = Vec::with_capacity(n);
    for t in 0..n {
        if parcels.len() < 5 && rng.chance(0.4) {
            made += 1;
            parcels.push(
                json!({"sku": format!("SKU-{:04}", 1000 + made * 7), "scanned": false,
                                "shelf": format!("S{}", 1 + rng.below(4))}),
            );
        }
        if !parcels.is_empty() && rng.chance(0.3) {
            let i = rng.below(parcels.len());
            parcels.remove(i);
        }
        let shelves: Vec<Value> = (1..=4)
            .filter(|_| rng.chance(0.8))
            .map(|i| json!({"name": format!("S{i}"), "levels": 1 + i % 3}))
            .collect();
        battery = if battery < 0.15 { 0.95 } else { battery - 0.02 };
        out.push(
            json!({"tick": t, "battery": (battery * 100.0).round() / 100.0,
                        "shelves": shelves, "parcels": parcels.clone()}),
        );
    }
    out
}
