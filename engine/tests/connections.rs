//! Connections against a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use engine::connections::{self, DisplayName, NewConnection, Status, UsableBy};
use engine::constant_contact::{Secret, Tokens};
use engine::crypto::Cipher;
use engine::password::Password;
use engine::secrets::SecretKey;
use engine::testing::TestDb;
use engine::users::{self, Email, Role, User};
use engine::{audit, Error};

const ACCESS: &str = "sbx_at_TOKENVALUE_that_must_never_be_stored_in_clear";
const REFRESH: &str = "sbx_rt_REFRESHVALUE_that_must_never_be_stored_in_clear";

fn tokens(access: &str, refresh: &str) -> Tokens {
    Tokens {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(refresh)),
        expires_at: engine::time::now_ms() + 86_400_000,
        scopes: vec!["contact_data".into(), "offline_access".into()],
    }
}

async fn admin(t: &TestDb) -> User {
    users::create_first_admin(
        &t.db,
        &Email::parse("root@example.com").unwrap(),
        &Password::parse("root password 1").unwrap(),
    )
    .await
    .unwrap()
}

async fn add(
    t: &TestDb,
    cipher: &Cipher,
    actor: &User,
    name: &str,
    usable_by: UsableBy,
) -> Result<connections::Connection, Error> {
    connections::create(
        &t.db,
        cipher,
        actor,
        NewConnection {
            display_name: DisplayName::parse(name).unwrap(),
            usable_by,
            consent_at: engine::time::now_ms(),
            tokens: tokens(ACCESS, REFRESH),
            export_user_id: actor.id,
        },
    )
    .await
}

#[tokio::test]
async fn a_connection_is_saved_with_its_consent_export_user_and_tokens_sealed() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let cipher = Cipher::new(&SecretKey::generate());
    let c = add(&t, &cipher, &root, "Newsletter", UsableBy::Admins)
        .await
        .unwrap();
    assert_eq!(c.display_name, "Newsletter");
    assert_eq!(c.status, Status::Authorized);
    assert_eq!(c.export_user_email.as_deref(), Some("root@example.com"));
    assert_eq!(c.consent_by_email.as_deref(), Some("root@example.com"));
    assert!(c.authorized_at.is_some());

    let back = connections::tokens(&t.db, &cipher, c.id).await.unwrap();
    assert_eq!(back.access_token.expose(), ACCESS);
    assert_eq!(back.refresh_token.unwrap().expose(), REFRESH);

    // Nothing readable in the stored row...
    let row: (String, String) = sqlx::query_as::<_, (String, String)>(
        "SELECT access_token_enc, refresh_token_enc FROM connections",
    )
    .fetch_one(t.db.pool())
    .await
    .unwrap();
    assert!(!row.0.contains("TOKENVALUE") && !row.1.contains("REFRESHVALUE"));
    // ...nor anywhere in the database file.
    if let Some(path) = t.url.strip_prefix("sqlite://") {
        t.db.close().await;
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("TOKENVALUE") && !text.contains("REFRESHVALUE"),
            "a token is in the database file in clear"
        );
    }
}

#[tokio::test]
async fn names_are_unique_whatever_their_case_and_the_error_names_the_field() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let cipher = Cipher::new(&SecretKey::generate());
    add(&t, &cipher, &root, "Newsletter", UsableBy::Admins)
        .await
        .unwrap();
    let dup = add(&t, &cipher, &root, "  NEWSLETTER ", UsableBy::Admins).await;
    assert!(
        matches!(
            dup,
            Err(Error::Invalid {
                field: "display_name",
                ..
            })
        ),
        "{dup:?}"
    );
    assert!(
        connections::is_name_taken(&t.db, &DisplayName::parse("newsletter").unwrap(), None)
            .await
            .unwrap()
    );
    let other = add(
        &t,
        &cipher,
        &root,
        "Promotions",
        UsableBy::AdminsAndContributors,
    )
    .await
    .unwrap();
    assert!(!connections::is_name_taken(
        &t.db,
        &DisplayName::parse("promotions").unwrap(),
        Some(other.id)
    )
    .await
    .unwrap());
    let clash = connections::update(
        &t.db,
        &root,
        other.id,
        &DisplayName::parse("newsletter").unwrap(),
        UsableBy::Admins,
    )
    .await;
    assert!(matches!(
        clash,
        Err(Error::Invalid {
            field: "display_name",
            ..
        })
    ));
}

#[tokio::test]
async fn who_may_use_a_connection_follows_its_setting() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let cipher = Cipher::new(&SecretKey::generate());
    add(&t, &cipher, &root, "Admins only", UsableBy::Admins)
        .await
        .unwrap();
    let shared = add(
        &t,
        &cipher,
        &root,
        "Shared",
        UsableBy::AdminsAndContributors,
    )
    .await
    .unwrap();
    let names =
        |v: Vec<connections::Connection>| v.into_iter().map(|c| c.display_name).collect::<Vec<_>>();
    assert_eq!(
        names(connections::usable_by(&t.db, Role::Admin).await.unwrap()),
        ["Admins only", "Shared"]
    );
    assert_eq!(
        names(
            connections::usable_by(&t.db, Role::Contributor)
                .await
                .unwrap()
        ),
        ["Shared"]
    );
    assert!(connections::usable_by(&t.db, Role::Viewer)
        .await
        .unwrap()
        .is_empty());
    let edited = connections::update(
        &t.db,
        &root,
        shared.id,
        &DisplayName::parse("Shared list").unwrap(),
        UsableBy::Admins,
    )
    .await
    .unwrap();
    assert_eq!(
        (edited.display_name.as_str(), edited.usable_by),
        ("Shared list", UsableBy::Admins)
    );
    assert!(connections::usable_by(&t.db, Role::Contributor)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn status_follows_reauthentication_and_removal_hands_back_the_tokens() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let cipher = Cipher::new(&SecretKey::generate());
    let c = add(&t, &cipher, &root, "Newsletter", UsableBy::Admins)
        .await
        .unwrap();
    connections::set_status(
        &t.db,
        c.id,
        Status::NeedsReauthentication,
        Some("The refresh token was refused."),
    )
    .await
    .unwrap();
    let c2 = connections::get(&t.db, c.id).await.unwrap().unwrap();
    assert_eq!(c2.status, Status::NeedsReauthentication);
    assert_eq!(
        c2.status_reason.as_deref(),
        Some("The refresh token was refused.")
    );

    connections::store_tokens(
        &t.db,
        &cipher,
        Some(&root),
        c.id,
        &tokens("sbx_at_new", "sbx_rt_new"),
    )
    .await
    .unwrap();
    let c3 = connections::get(&t.db, c.id).await.unwrap().unwrap();
    assert_eq!((c3.status, c3.status_reason), (Status::Authorized, None));
    assert_eq!(
        connections::tokens(&t.db, &cipher, c.id)
            .await
            .unwrap()
            .access_token
            .expose(),
        "sbx_at_new"
    );

    let (gone, tokens) = connections::remove(&t.db, &cipher, &root, c.id)
        .await
        .unwrap();
    assert_eq!(gone.display_name, "Newsletter");
    assert_eq!(
        tokens.unwrap().refresh_token.unwrap().expose(),
        "sbx_rt_new"
    );
    assert!(connections::get(&t.db, c.id).await.unwrap().is_none());
    let actions: Vec<String> = audit::recent(&t.db, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        &actions[..3],
        [
            "connection.remove",
            "connection.authorize",
            "connection.create"
        ]
    );
}

#[tokio::test]
async fn tokens_sealed_under_another_key_are_an_error_not_garbage() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let c = add(
        &t,
        &Cipher::new(&SecretKey::generate()),
        &root,
        "Newsletter",
        UsableBy::Admins,
    )
    .await
    .unwrap();
    let other = Cipher::new(&SecretKey::generate());
    assert!(connections::tokens(&t.db, &other, c.id).await.is_err());
    // Removal still works (the tokens just cannot be revoked).
    let (_, tokens) = connections::remove(&t.db, &other, &root, c.id)
        .await
        .unwrap();
    assert!(tokens.is_none());
}
