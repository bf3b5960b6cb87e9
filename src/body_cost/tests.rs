//! Unit tests of the body cost estimate, the density scan and the in-flight budgets (`mod.rs`).

use super::*;

fn check(json: &str, values: u64, members: u64, objects: u64) {
    let got = scan(json.as_bytes());
    assert_eq!(
        (got.values, got.members, got.objects),
        (values, members, objects),
        "{json}"
    );
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
        assert_eq!(count(&v), (values, members, got.strings), "{json}");
    }
}

/// The same counts from a parsed value: values, members, strings (keys included).
fn count(v: &serde_json::Value) -> (u64, u64, u64) {
    let add = |(v, m, s): (u64, u64, u64), (ev, em, es): (u64, u64, u64)| (v + ev, m + em, s + es);
    match v {
        serde_json::Value::Array(a) => a.iter().map(count).fold((1, 0, 0), add),
        serde_json::Value::Object(o) => o
            .values()
            .map(count)
            .fold((1, o.len() as u64, o.len() as u64), add),
        serde_json::Value::String(_) => (1, 0, 1),
        _ => (1, 0, 0),
    }
}

/// The scan before `string_end` (a state machine per byte): the oracle of the fast one.
fn scan_per_byte(raw: &[u8]) -> Shape {
    let mut shape = Shape {
        values: 1,
        ..Shape::default()
    };
    let mut in_string = false;
    let mut escaped = false;
    // The last structural byte seen outside strings and whitespace.
    let mut last = 0u8;
    let mut depth = 0u32;
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                shape.strings += 1;
            }
            b',' => shape.values += 1,
            b':' => shape.members += 1,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_DEPTH {
            break;
        }
        if (last == b'[' && b != b']') || (last == b'{' && b != b'}') {
            // A container with content: its first element (or member) is one more value.
            shape.values += 1;
            if last == b'{' {
                shape.objects += 1;
            }
        }
        last = b;
    }
    shape
}

#[test]
fn the_scan_counts_what_a_scan_per_byte_counts() {
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\"",
        "\\",
        "\\\"",
        "a",
        "0",
        "\"text\"",
        "\"\\\"q\\\"\"",
        "\"x\\\\\"",
        "null",
        "\n",
    ];
    // every sequence of up to 4 pieces, and longer ones from a fixed-seed generator
    let mut bodies = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for b in &bodies {
            for p in pieces {
                next.push(format!("{b}{p}"));
            }
        }
        bodies.extend(next);
        bodies.sort();
        bodies.dedup();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let mut body = String::new();
        for _ in 0..(seed % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push_str(
                pieces
                    .get((seed % pieces.len() as u64) as usize)
                    .unwrap_or(&""),
            );
        }
        bodies.push(body);
    }
    for body in &bodies {
        let (fast, slow) = (scan(body.as_bytes()), scan_per_byte(body.as_bytes()));
        assert_eq!(
            (fast.values, fast.members, fast.objects, fast.strings),
            (slow.values, slow.members, slow.objects, slow.strings),
            "{body:?}"
        );
    }
}

#[test]
fn scan_counts_values_members_and_objects() {
    check("0", 1, 0, 0);
    check("[]", 1, 0, 0);
    check("{}", 1, 0, 0);
    check("[0]", 2, 0, 0);
    check("[0, 0, 0]", 4, 0, 0);
    check("[[], {}, [1]]", 5, 0, 0);
    check(r#"{"a": 1}"#, 2, 1, 1);
    check(r#"{"a": [1, 2], "b": {"c": null}}"#, 6, 3, 2);
    check(r#"["a,b:[{", "\"],"]"#, 3, 0, 0);
    check(r#" { "model" : "m" , "messages" : [ ] } "#, 3, 2, 1);
    // Deeper than the parser goes: only the part it would build counts.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(scan(deep.as_bytes()).values, 128);
}

#[test]
fn dense_bodies_are_refused_and_text_is_not() {
    let zeros = format!("[{}0]", "0,".repeat(1_000_000));
    let err = check_density(zeros.as_bytes()).unwrap_err();
    assert_eq!((err.status, err.code), (413, "json_too_dense"));
    let objects = format!("[{}{{}}]", r#"{"a":0},"#.repeat(200_000));
    assert!(check_density(objects.as_bytes()).is_err());
    let messages = r#"{"role":"user","content":"Hello there, how are you doing today?"},"#;
    let chat = format!(
        r#"{{"model":"m","messages":[{}{{}}]}}"#,
        messages.repeat(100_000)
    );
    assert!(check_density(chat.as_bytes()).is_ok());
    let text = format!(r#"{{"model":"m","prompt":"{}"}}"#, "x".repeat(5_000_000));
    let est = check_density(text.as_bytes()).unwrap();
    assert!((4 * 5_000_000..5 * 5_000_000).contains(&est), "{est}");
    // Each short string is its own allocation, counted in the estimate (not the density
    // limit, so short chat messages pass): `["a","a",…]` is 24 × its bytes.
    let letters = format!("[{}\"a\"]", "\"a\",".repeat(1_000_000));
    let est = check_density(letters.as_bytes()).unwrap();
    assert!(est >= 1_000_000 * (64 + 32 + 4 * 4), "{est}");
    let words = format!("[{}\"word\"]", "\"lantern\",".repeat(1_000_000));
    let est = check_density(words.as_bytes()).unwrap();
    assert!(est >= 1_000_000 * (64 + 32 + 4 * 10), "{est}");
    // Small bodies of any shape pass.
    assert!(check_density(b"[0,0,0,0,0,0,0,0,0,0,0,0]").is_ok());
}

#[test]
fn reservations_share_one_budget_and_release_on_drop() {
    // The only test in this process that reserves: the counter starts at zero.
    let mut a = Reservation::new(100);
    a.grow_to(60).unwrap();
    a.grow_to(40).unwrap(); // never shrinks
    let mut b = Reservation::new(100);
    assert_eq!(b.grow_to(50).unwrap_err().status, 503, "taken by `a` now");
    assert_eq!(
        b.grow_to(101).unwrap_err().status,
        413,
        "more than the budget"
    );
    drop(a);
    b.grow_to(50).unwrap();
    b.grow_to(100).unwrap();
    drop(b);
    assert_eq!(IN_FLIGHT.load(Ordering::SeqCst), 0);
}
