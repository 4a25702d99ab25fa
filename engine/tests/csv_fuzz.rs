//! The CSV reader on arbitrary bytes: it must never panic, and every row
//! it reads is either imported or reported.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use engine::profiles;
use engine::testing::TestDb;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_row_is_accounted_for(body in proptest::collection::vec(any::<u8>(), 0..2_000), quoted in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let t = TestDb::new().await;
            let mut input = if quoted { b"id,\"na,me\",email\n".to_vec() } else { b"id,name,email\n".to_vec() };
            input.extend_from_slice(&body);
            let report = profiles::import_csv(&t.db, std::io::Cursor::new(input.clone()), "id").await.unwrap();
            prop_assert_eq!(report.rows, report.imported + report.rejected);
            prop_assert!(profiles::count(&t.db).await.unwrap() as u64 <= report.imported);
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A static segment's id file: any bytes give ids or a clear error.
    #[test]
    fn id_files_of_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        match engine::segments::read_ids(body.as_slice()) {
            Ok(ids) => prop_assert!(ids.iter().all(|id| !id.is_empty() && id.trim() == id)),
            Err(e) => prop_assert!(e.to_string().contains("Line"), "{e}"),
        }
    }
}
