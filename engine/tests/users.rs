#![allow(clippy::unwrap_used)] // tests fail loudly by design
//! Users and sign-in against a real database: SQLite by default, PostgreSQL
//! when the run sets `TEST_DATABASE=postgres`.

use engine::password::Password;
use engine::testing::TestDb;
use engine::users::{self, Email, Role};
use engine::{audit, Error};

fn pw(text: &str) -> Password {
    Password::parse(text).unwrap()
}

async fn admin(t: &TestDb) -> users::User {
    users::create_first_admin(
        &t.db,
        &Email::parse("root@example.com").unwrap(),
        &pw("first admin password"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn first_admin_can_be_created_once_only() {
    let t = TestDb::new().await;
    assert!(users::needs_setup(&t.db).await.unwrap());
    let first = admin(&t).await;
    assert_eq!(first.role, Role::Admin);
    assert!(!users::needs_setup(&t.db).await.unwrap());
    let again = users::create_first_admin(
        &t.db,
        &Email::parse("other@example.com").unwrap(),
        &pw("another password"),
    )
    .await;
    assert!(matches!(again, Err(Error::AlreadySetUp)));
    assert_eq!(users::list_users(&t.db).await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_first_admins_make_exactly_one() {
    let t = TestDb::new().await;
    let (ea, eb) = (
        Email::parse("a@example.com").unwrap(),
        Email::parse("b@example.com").unwrap(),
    );
    let (pa, pb) = (pw("password number one"), pw("password number two"));
    let a = users::create_first_admin(&t.db, &ea, &pa);
    let b = users::create_first_admin(&t.db, &eb, &pb);
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");
    assert_eq!(users::list_users(&t.db).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sign_in_gives_one_message_for_unknown_email_and_wrong_password() {
    let t = TestDb::new().await;
    admin(&t).await;
    let ok = users::authenticate(&t.db, " ROOT@example.com", &pw("first admin password"))
        .await
        .unwrap();
    assert!(ok.last_sign_in_at.is_some());
    let wrong = users::authenticate(&t.db, "root@example.com", &pw("not the password"))
        .await
        .unwrap_err();
    let unknown = users::authenticate(&t.db, "nobody@example.com", &pw("not the password"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::InvalidCredentials));
    assert_eq!(wrong.to_string(), unknown.to_string());
}

#[tokio::test]
async fn repeated_failures_lock_the_email_out_even_with_the_right_password() {
    let t = TestDb::new().await;
    admin(&t).await;
    for _ in 0..users::MAX_FAILURES {
        let e = users::authenticate(&t.db, "root@example.com", &pw("wrong password!"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCredentials));
    }
    let locked = users::authenticate(&t.db, "root@example.com", &pw("first admin password"))
        .await
        .unwrap_err();
    assert!(
        matches!(locked, Error::LockedOut { minutes: 15 }),
        "{locked:?}"
    );
}

#[tokio::test]
async fn duplicate_email_is_a_field_error() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let email = Email::parse("ann@example.com").unwrap();
    users::create_user(
        &t.db,
        Some(&root),
        &email,
        Role::Contributor,
        &pw("ann's password"),
    )
    .await
    .unwrap();
    let dup = users::create_user(
        &t.db,
        Some(&root),
        &Email::parse("ANN@example.com").unwrap(),
        Role::Viewer,
        &pw("ann's password"),
    )
    .await;
    assert!(
        matches!(dup, Err(Error::Invalid { field: "email", .. })),
        "{dup:?}"
    );
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_or_deactivated() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let demote = users::set_role(&t.db, &root, root.id, Role::Viewer).await;
    assert!(matches!(demote, Err(Error::Conflict(_))), "{demote:?}");
    let deactivate = users::set_active(&t.db, &root, root.id, false).await;
    assert!(matches!(deactivate, Err(Error::Conflict(_))));

    let second = users::create_user(
        &t.db,
        Some(&root),
        &Email::parse("second@example.com").unwrap(),
        Role::Admin,
        &pw("second admin pw"),
    )
    .await
    .unwrap();
    let demoted = users::set_role(&t.db, &root, second.id, Role::Contributor)
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::Contributor);
    users::set_role(&t.db, &root, second.id, Role::Admin)
        .await
        .unwrap();
    let off = users::set_active(&t.db, &root, root.id, false)
        .await
        .unwrap();
    assert!(!off.active);
}

#[tokio::test]
async fn a_deactivated_user_cannot_sign_in_and_changes_are_audited() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let v = users::create_user(
        &t.db,
        Some(&root),
        &Email::parse("vic@example.com").unwrap(),
        Role::Viewer,
        &pw("vic's password"),
    )
    .await
    .unwrap();
    users::set_active(&t.db, &root, v.id, false).await.unwrap();
    let e = users::authenticate(&t.db, "vic@example.com", &pw("vic's password"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Deactivated));
    let log = audit::recent(&t.db, 10).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["user.deactivate", "user.create", "user.create_first_admin"]
    );
    assert_eq!(log[0].actor_email.as_deref(), Some("root@example.com"));
    assert_eq!(log[0].target, "vic@example.com");
}
