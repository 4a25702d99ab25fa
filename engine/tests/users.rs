#![allow(clippy::unwrap_used)] // tests fail loudly by design
//! Users and sign-in against a real database: SQLite by default, PostgreSQL
//! when the run sets `TEST_DATABASE=postgres`.

use engine::password::Password;
use engine::testing::TestDb;
use engine::users::{self, Email, Role};
use engine::{audit, Error};

/// The address sign-ins in these tests come from.
const CLIENT: &str = "192.0.2.1";

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
    let ok = users::authenticate(
        &t.db,
        " ROOT@example.com",
        &pw("first admin password"),
        CLIENT,
    )
    .await
    .unwrap();
    assert!(ok.last_sign_in_at.is_some());
    let wrong = users::authenticate(&t.db, "root@example.com", &pw("not the password"), CLIENT)
        .await
        .unwrap_err();
    let unknown = users::authenticate(&t.db, "nobody@example.com", &pw("not the password"), CLIENT)
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
        let e = users::authenticate(&t.db, "root@example.com", &pw("wrong password!"), CLIENT)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCredentials));
    }
    let locked = users::authenticate(
        &t.db,
        "root@example.com",
        &pw("first admin password"),
        CLIENT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(locked, Error::LockedOut { minutes: 15 }),
        "{locked:?}"
    );
    // The lockout holds for that client only: the owner, elsewhere, gets in.
    users::authenticate(
        &t.db,
        "root@example.com",
        &pw("first admin password"),
        "10.0.0.9",
    )
    .await
    .unwrap();
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
    let e = users::authenticate(&t.db, "vic@example.com", &pw("vic's password"), CLIENT)
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

#[tokio::test]
async fn parallel_wrong_passwords_are_checked_no_more_than_the_limit() {
    let t = TestDb::new().await;
    admin(&t).await;
    // 40 attempts at once, the right password among them: each is counted
    // before it is checked, so at most MAX_FAILURES get a password check.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move {
            let password = if i == 39 {
                "first admin password"
            } else {
                "wrong password!"
            };
            users::authenticate(&db, "root@example.com", &pw(password), CLIENT).await
        }));
    }
    let mut checked = 0;
    let mut locked = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) | Err(Error::InvalidCredentials) => checked += 1,
            Err(Error::LockedOut { .. }) => locked += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        checked <= users::MAX_FAILURES as usize + 1,
        "{checked} attempts were checked"
    );
    assert_eq!(checked + locked, 40);
}

#[tokio::test]
async fn two_admins_deactivating_each_other_at_once_leave_one_admin() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let other = users::create_user(
        &t.db,
        Some(&root),
        &Email::parse("second@example.com").unwrap(),
        Role::Admin,
        &pw("second admin password"),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            users::set_active(&t.db, &root, other.id, false),
            users::set_active(&t.db, &other, root.id, false),
        );
        // One wins, the other is refused with the reason (never a
        // database error).
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict(_))))
            .count();
        assert!(
            a.as_ref()
                .err()
                .is_none_or(|e| matches!(e, Error::Conflict(_)))
                && b.as_ref()
                    .err()
                    .is_none_or(|e| matches!(e, Error::Conflict(_))),
            "{a:?} {b:?}"
        );
        assert_eq!(refused, 1, "{a:?} {b:?}");
        let admins = users::list_users(&t.db)
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.role == Role::Admin && u.active)
            .count();
        assert_eq!(admins, 1);
        // Back to two for the next round.
        let active = users::list_users(&t.db).await.unwrap();
        let actor = active.iter().find(|u| u.active).unwrap().clone();
        for u in &active {
            if !u.active {
                users::set_active(&t.db, &actor, u.id, true).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_session_from_before_a_deactivation_stays_signed_out_after_reactivation() {
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
    let signed_in_at = engine::time::now_ms() - 1;
    assert!(users::session_user(&t.db, v.id, signed_in_at)
        .await
        .unwrap()
        .is_some());
    users::set_active(&t.db, &root, v.id, false).await.unwrap();
    users::set_active(&t.db, &root, v.id, true).await.unwrap();
    assert!(users::session_user(&t.db, v.id, signed_in_at)
        .await
        .unwrap()
        .is_none());
    let later = engine::time::now_ms() + 1;
    assert!(users::session_user(&t.db, v.id, later)
        .await
        .unwrap()
        .is_some());
}

/// The audit log is searched by who, what (an action reads as its words,
/// `user.set_role` as "user set role") and when, with LIKE's wildcards
/// matched as typed.
#[tokio::test]
async fn the_audit_log_is_searched_by_who_what_and_when() {
    let t = TestDb::new().await;
    let root = admin(&t).await;
    let carol = users::create_user(
        &t.db,
        Some(&root),
        &Email::parse("carol_100%@example.com").unwrap(),
        Role::Contributor,
        &pw("carol password 1"),
    )
    .await
    .unwrap();
    users::set_role(
        &t.db,
        &second_admin(&t, &root).await,
        carol.id,
        Role::Viewer,
    )
    .await
    .unwrap();
    let search = |who: &str, what: &str, since: Option<i64>, until: Option<i64>| {
        let filter = audit::Filter {
            who: who.to_owned(),
            what: what.to_owned(),
            since,
            until,
        };
        let db = t.db.clone();
        async move {
            audit::search(&db, &filter, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("", "", None, None).await.len(), 4);
    assert_eq!(search("", "set role", None, None).await, ["user.set_role"]);
    assert_eq!(
        search("", "USER CREATE", None, None).await,
        ["user.create", "user.create", "user.create_first_admin"]
    );
    // "100%" is text, not a wildcard: only carol's address has it.
    assert_eq!(search("", "_100%", None, None).await.len(), 2);
    assert_eq!(search("ann@", "", None, None).await, ["user.set_role"]);
    assert_eq!(
        search("command line", "", None, None).await,
        Vec::<String>::new()
    );
    let now = engine::time::now_ms();
    assert_eq!(search("", "", Some(now + 60_000), None).await.len(), 0);
    assert_eq!(search("", "", None, Some(now - 3_600_000)).await.len(), 0);
}

/// A second administrator, ann, made by `root`.
async fn second_admin(t: &TestDb, root: &users::User) -> users::User {
    users::create_user(
        &t.db,
        Some(root),
        &Email::parse("ann@example.com").unwrap(),
        Role::Admin,
        &pw("ann password 12"),
    )
    .await
    .unwrap()
}
