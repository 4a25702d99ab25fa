//! Property tests of the import batch builder.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use engine::constant_contact::{BatchBuilder, ImportContact};
use proptest::prelude::*;
use serde_json::Value;

fn contact() -> impl Strategy<Value = (bool, ImportContact)> {
    // Mostly valid contacts, some with a name over the 50-character limit.
    ("[a-z]{1,20}", "[A-Za-zé ]{0,60}", "[a-z0-9 ]{0,200}").prop_map(|(local, name, note)| {
        let c = ImportContact::new(format!("{local}@example.com"))
            .set("first_name", name.clone())
            .set("cf:note", note);
        (name.chars().count() <= 50, c)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batches_respect_the_limits_and_hold_every_valid_contact_once(
        contacts in proptest::collection::vec(contact(), 0..400),
        max_contacts in 1usize..60,
        max_bytes in 600usize..20_000,
    ) {
        let lists = vec![String::from("04fe9a97-a579-43c5-bb1a-58ed29bf0a6a")];
        let mut b = BatchBuilder::with_limits(&lists, max_contacts, max_bytes);
        let mut batches = Vec::new();
        let mut expected = Vec::new();
        let mut rejected = Vec::new();
        for (i, (valid, c)) in contacts.iter().enumerate() {
            match b.push(i.to_string(), c) {
                Ok(done) => { expected.push(i.to_string()); batches.extend(done); }
                Err(r) => { rejected.push(r.key.clone()); prop_assert!(!valid || r.field == "contact"); }
            }
            if !valid { prop_assert!(rejected.last() == Some(&i.to_string())); }
        }
        batches.extend(b.finish());
        let mut seen = Vec::new();
        for batch in &batches {
            prop_assert!(!batch.is_empty());
            prop_assert!(batch.len() <= max_contacts);
            prop_assert!(batch.body.len() < max_bytes);
            let v: Value = serde_json::from_slice(&batch.body).unwrap();
            prop_assert_eq!(v["import_data"].as_array().unwrap().len(), batch.len());
            prop_assert_eq!(&v["list_ids"], &serde_json::json!(lists));
            seen.extend(batch.keys.iter().cloned());
        }
        prop_assert_eq!(seen, expected);
    }
}
