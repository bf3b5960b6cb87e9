//! Unit tests of `index.rs`.

use super::*;
use serde_json::json;

fn meta(route: &str, scope: &str) -> store::Meta {
    store::Meta {
        route: route.to_string(),
        scope: scope.to_string(),
        ..store::Meta::default()
    }
}

#[test]
fn the_nearest_entry_is_found_without_reading_any() {
    let index = Index::default();
    let ask = |content: &str, t: f64| {
        json!({"model": "m", "temperature": t, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
    };
    let chat = meta("/chat/completions", "");
    for (i, content) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
        let canonical = ask(content, 0.5).to_string();
        index.insert(&format!("k{i}"), &chat, canonical.as_bytes(), 1);
    }
    let embeddings = meta("/embeddings", "");
    index.insert(
        "other",
        &embeddings,
        ask("beta", 0.2).to_string().as_bytes(),
        1,
    );
    let (near, compared) = index.nearest("/chat/completions", "", &ask("beta", 0.2));
    assert_eq!(near.first().map(String::as_str), Some("k1"));
    assert_eq!(compared, 4);
    index.remove(&["k1".to_string()]);
    let (near, _) = index.nearest("/chat/completions", "", &ask("beta", 0.2));
    assert!(!near.contains(&"k1".to_string()));
    assert_eq!(
        index
            .nearest("/chat/completions", "s", &ask("beta", 0.2))
            .0
            .len(),
        0
    );
}

#[test]
fn the_bounds_drop_the_oldest_entries_and_search_texts() {
    let index = Index::default();
    index.enable_search(2 * (ENTRY_OVERHEAD + 100) as u64);
    let chat = meta("/chat/completions", "");
    for i in 0..MAX_INDEXED + 5 {
        let canonical = json!({"model": "m", "n": i}).to_string();
        index.insert(&format!("k{i}"), &chat, canonical.as_bytes(), 1);
    }
    let inner = index.read();
    assert_eq!(inner.items.len(), MAX_INDEXED);
    assert_eq!(inner.dropped, 5);
    assert!(!inner.items.contains_key("k4") && inner.items.contains_key("k5"));
    let texts: Vec<&String> = inner
        .items
        .iter()
        .filter(|(_, i)| i.text.is_some())
        .map(|(k, _)| k)
        .collect();
    // only the newest texts fit the search bound; the entries stay for replay
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(inner.text_bytes <= 2 * (ENTRY_OVERHEAD + 100));
    assert!(inner
        .items
        .get(&format!("k{}", MAX_INDEXED + 4))
        .is_some_and(|i| i.text.is_some()));
    assert!(inner.order.len() <= 2 * inner.items.len() + 1024);
}

#[test]
fn the_fill_reads_only_the_newest_entries_oldest_first() {
    let dir = std::env::temp_dir().join(format!("llm-relay-index-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let base = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
    // stored in this order, aged so that "n3" is the oldest and "n4" the newest
    let ages = [(0, 30), (1, 10), (2, 40), (3, 50), (4, 0)];
    for (n, age) in ages {
        let canonical = json!({"model": "m", "n": n}).to_string();
        let key = crate::cache::key::entry_key("/chat/completions", "", canonical.as_bytes());
        let meta = store::Meta {
            route: "/chat/completions".to_string(),
            sha256: crate::cache::key::checksum(b"answer"),
            ..store::Meta::default()
        };
        store::save(&dir, &key, &meta, canonical.as_bytes(), b"answer", false).unwrap();
        let file = fs::File::options()
            .write(true)
            .open(store::request_path(&dir, &key))
            .unwrap();
        file.set_modified(base - std::time::Duration::from_secs(age))
            .unwrap();
    }
    let index = Index::default();
    assert_eq!(index.fill_newest(&dir, 3), 3);
    let inner = index.read();
    assert!(inner.ready);
    let n_of = |key: &str| {
        let item = inner.items.get(key).unwrap();
        (item.model.clone(), item.bytes)
    };
    let order: Vec<String> = inner.order.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(order.len(), 3);
    // the three newest (n4, n1, n0), oldest first: the bound would drop n0 next
    let expected: Vec<String> = [0, 1, 4]
        .iter()
        .map(|n| {
            let canonical = json!({"model": "m", "n": n}).to_string();
            crate::cache::key::entry_key("/chat/completions", "", canonical.as_bytes())
        })
        .collect();
    assert_eq!(order, expected);
    assert_eq!(n_of(&order[0]), ("m".to_string(), 6));
    drop(inner);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_entry_stored_again_is_the_newest_and_counted_once() {
    let index = Index::default();
    index.enable_search(1 << 20);
    let chat = meta("/chat/completions", "");
    index.insert("a", &chat, br#"{"model":"m","x":1}"#, 1);
    index.insert("b", &chat, br#"{"model":"m","x":2}"#, 1);
    index.insert("a", &chat, br#"{"model":"m","x":1}"#, 1);
    let inner = index.read();
    assert_eq!(inner.items.len(), 2);
    assert_eq!(inner.groups.values().map(Vec::len).sum::<usize>(), 2);
    let one = ENTRY_OVERHEAD + 1 + "/chat/completions".len() + 1 + r#"{"model":"m","x":1}"#.len();
    assert_eq!(inner.text_bytes, 2 * one);
}
