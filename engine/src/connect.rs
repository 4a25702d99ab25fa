//! Adding, authorizing, testing and removing a Constant Contact connection:
//! the OAuth round trip with its state kept in the user's session.
//!
//! While the admin is at Constant Contact, the session holds a draft: the
//! form's values, the `state` to compare on return, and the PKCE verifier
//! and (after the callback) the tokens — sealed with the instance cipher,
//! since sessions live in the database. Nothing is written to the
//! connections table until the admin saves, so an abandoned or failed
//! round trip leaves no half-made connection behind.

use serde::{Deserialize, Serialize};

use crate::connections::{self, Connection, DisplayName, NewConnection, Status, UsableBy};
use crate::constant_contact::{ApiClient, CcError, Endpoints, OAuthClient, Secret, Tokens};
use crate::crypto::Cipher;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::sessions::DraftStore;
use crate::time::now_ms;
use crate::users::User;
use crate::{ConnectionId, UserId};

/// The Constant Contact application this installation is registered as.
#[derive(Debug, Clone)]
pub struct CcApp {
    pub endpoints: Endpoints,
    pub client_id: String,
    pub client_secret: Secret,
    /// Our callback, as registered with the Constant Contact application.
    pub redirect_url: String,
}

impl CcApp {
    /// Names the application for pacing: Constant Contact's limits are
    /// per API key.
    pub fn key(&self) -> String {
        format!("{} {}", self.endpoints.api_base, self.client_id)
    }

    pub fn oauth(&self) -> Result<OAuthClient> {
        OAuthClient::new(
            &self.endpoints,
            &self.client_id,
            &self.client_secret,
            &self.redirect_url,
        )
        .map_err(cc_error)
    }
}

fn cc_error(e: CcError) -> Error {
    Error::Conflict(e.to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedTokens {
    access: String,
    refresh: Option<String>,
    expires_at: i64,
    scopes: Vec<String>,
}

/// The form between "Connect" and "Save", kept in the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Draft {
    display_name: String,
    usable_by: String,
    consent_at: i64,
    /// Re-authenticating an existing connection, rather than adding one.
    connection_id: Option<ConnectionId>,
    /// The pending authorization: `state` and the sealed PKCE verifier.
    /// Taken (removed) by the callback, so each is good once.
    pending: Option<(String, String)>,
    tokens: Option<SealedTokens>,
    export_user_id: Option<UserId>,
    export_user_email: Option<String>,
    error: Option<String>,
}

/// What the Add connection form shows after the round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftView {
    pub display_name: String,
    pub usable_by: UsableBy,
    pub consent_at: i64,
    pub authorized: bool,
    pub export_user_email: Option<String>,
    /// Why the last authorization failed, if it did.
    pub error: Option<String>,
}

async fn load(session: &dyn DraftStore) -> Result<Option<Draft>> {
    match session.load_draft().await? {
        None => Ok(None),
        // A draft this version cannot read is no draft (start again).
        Some(json) => Ok(serde_json::from_value(json).ok()),
    }
}

async fn store(session: &dyn DraftStore, draft: &Draft) -> Result<()> {
    let json = serde_json::to_value(draft).map_err(Error::internal)?;
    session.store_draft(json).await
}

/// Forgets the draft (Cancel, or after Save).
pub async fn discard(session: &dyn DraftStore) -> Result<()> {
    session.discard_draft().await
}

/// The draft of a new connection, if one is in progress.
pub async fn draft(session: &dyn DraftStore) -> Result<Option<DraftView>> {
    let Some(d) = load(session).await? else {
        return Ok(None);
    };
    if d.connection_id.is_some() {
        return Ok(None);
    }
    Ok(Some(DraftView {
        usable_by: UsableBy::parse(&d.usable_by).unwrap_or(UsableBy::Admins),
        display_name: d.display_name,
        consent_at: d.consent_at,
        authorized: d.tokens.is_some(),
        export_user_email: d.export_user_email,
        error: d.error,
    }))
}

/// "Connect": checks the form and returns the Constant Contact URL to send
/// the browser to. `agreed` is the privacy and compliance checkbox.
pub async fn begin_new(
    session: &dyn DraftStore,
    db: &Db,
    cipher: &Cipher,
    app: &CcApp,
    name: &str,
    usable_by: &str,
    agreed: bool,
) -> Result<String> {
    // Every problem at once, each shown next to its field.
    let mut name = DisplayName::parse(name);
    if let Ok(n) = &name {
        if connections::is_name_taken(db, n, None).await? {
            name = Err(Error::invalid(
                "display_name",
                "A connection with this name already exists.",
            ));
        }
    }
    let agreement = match agreed {
        true => Ok(()),
        false => Err(Error::invalid(
            "agree",
            "Agree to the data privacy and compliance statement to connect.",
        )),
    };
    let (name, usable_by) = match (name, UsableBy::parse(usable_by), agreement) {
        (Ok(name), Ok(usable_by), Ok(())) => (name, usable_by),
        (name, usable_by, agreement) => {
            return Err(Error::gather(
                [name.err(), usable_by.err(), agreement.err()]
                    .into_iter()
                    .flatten(),
            ))
        }
    };
    let previous = load(session).await?.filter(|d| d.connection_id.is_none());
    let draft = Draft {
        display_name: name.as_str().to_owned(),
        usable_by: usable_by.as_str().to_owned(),
        consent_at: now_ms(),
        connection_id: None,
        pending: None,
        tokens: None,
        // Someone who already added themselves need not do it again.
        export_user_id: previous.as_ref().and_then(|d| d.export_user_id),
        export_user_email: previous.and_then(|d| d.export_user_email),
        error: None,
    };
    start(session, cipher, app, draft).await
}

/// "Re-authenticate" an existing connection.
pub async fn begin_reauth(
    session: &dyn DraftStore,
    db: &Db,
    cipher: &Cipher,
    app: &CcApp,
    id: ConnectionId,
) -> Result<String> {
    let c = connections::get(db, id)
        .await?
        .ok_or(Error::NotFound("The connection"))?;
    let draft = Draft {
        display_name: c.display_name,
        usable_by: c.usable_by.as_str().to_owned(),
        consent_at: c.consent_at,
        connection_id: Some(id),
        pending: None,
        tokens: None,
        export_user_id: None,
        export_user_email: None,
        error: None,
    };
    start(session, cipher, app, draft).await
}

async fn start(
    session: &dyn DraftStore,
    cipher: &Cipher,
    app: &CcApp,
    mut draft: Draft,
) -> Result<String> {
    let request = app.oauth()?.authorization_request();
    draft.pending = Some((
        request.state.expose().to_owned(),
        cipher.encrypt(&request.pkce_verifier)?,
    ));
    store(session, &draft).await?;
    Ok(request.url)
}

/// Where the callback sends the browser next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// Back to the Add connection form (authorized, or with an error).
    NewConnectionForm,
    /// Back to the list: an existing connection was re-authenticated (or
    /// failed to be, with the message).
    Reauthenticated { name: String, error: Option<String> },
}

/// The callback: checks `state` (single-use), exchanges the code, and
/// keeps the sealed tokens in the draft. Every failure is recorded on the
/// draft for the form to show; nothing is half-made.
pub async fn complete(
    session: &dyn DraftStore,
    db: &Db,
    cipher: &Cipher,
    app: &CcApp,
    actor: &User,
    params: &std::collections::HashMap<String, String>,
) -> Result<Completed> {
    let Some(mut draft) = load(session).await? else {
        return Err(Error::Conflict(String::from(
            "There is no sign-in with Constant Contact in progress in this session. Start again from Admin > Connections.",
        )));
    };
    // An answer that is not to our sign-in (a forged or replayed callback,
    // a stale tab) leaves the draft as it was: only the real answer may
    // consume the pending sign-in or change the draft.
    let ours = draft
        .pending
        .as_ref()
        .is_some_and(|(state, _)| params.get("state") == Some(state));
    if !ours {
        return Err(Error::Conflict(String::from(
            "The answer from Constant Contact could not be verified (it does not belong to the sign-in in progress). Nothing was changed.",
        )));
    }
    let pending = draft.pending.take();
    let outcome = finish(cipher, app, pending, params).await;
    let result = match (outcome, draft.connection_id) {
        (Ok(tokens), Some(id)) => {
            connections::store_tokens(db, cipher, Some(actor), id, &tokens).await?;
            discard(session).await?;
            return Ok(Completed::Reauthenticated {
                name: draft.display_name,
                error: None,
            });
        }
        (Err(message), Some(_)) => {
            discard(session).await?;
            return Ok(Completed::Reauthenticated {
                name: draft.display_name,
                error: Some(message),
            });
        }
        (Ok(tokens), None) => {
            draft.tokens = Some(SealedTokens {
                access: cipher.encrypt(&tokens.access_token)?,
                refresh: tokens
                    .refresh_token
                    .as_ref()
                    .map(|t| cipher.encrypt(t))
                    .transpose()?,
                expires_at: tokens.expires_at,
                scopes: tokens.scopes,
            });
            draft.error = None;
            Completed::NewConnectionForm
        }
        (Err(message), None) => {
            draft.tokens = None;
            draft.error = Some(message);
            Completed::NewConnectionForm
        }
    };
    store(session, &draft).await?;
    Ok(result)
}

/// The checks and the exchange; a user-facing message on failure.
async fn finish(
    cipher: &Cipher,
    app: &CcApp,
    pending: Option<(String, String)>,
    params: &std::collections::HashMap<String, String>,
) -> std::result::Result<Tokens, String> {
    let Some((state, sealed_verifier)) = pending else {
        return Err(String::from(
            "This sign-in with Constant Contact was already used or never started. Connect again.",
        ));
    };
    if params.get("state") != Some(&state) {
        return Err(String::from("The answer from Constant Contact could not be verified (the state did not match). Connect again."));
    }
    if let Some(error) = params.get("error") {
        return Err(if error == "access_denied" {
            String::from("Access was denied at Constant Contact. Connect again and choose Allow to authorize the connection.")
        } else {
            let detail = params
                .get("error_description")
                .map(String::as_str)
                .unwrap_or(error);
            format!("Constant Contact refused the sign-in: {detail}")
        });
    }
    let Some(code) = params.get("code") else {
        return Err(String::from(
            "Constant Contact sent no authorization code. Connect again.",
        ));
    };
    let verifier = cipher
        .decrypt(&sealed_verifier)
        .map_err(|e| e.to_string())?;
    let oauth = app.oauth().map_err(|e| e.to_string())?;
    oauth.exchange_code(code, &verifier).await.map_err(|e| match e {
        CcError::NeedsReauthentication => String::from(
            "Constant Contact did not accept the authorization code (it may have expired or been used already). Connect again.",
        ),
        other => format!("The tokens could not be obtained: {other}"),
    })
}

/// "Add yourself as export user".
pub async fn add_export_user(session: &dyn DraftStore, actor: &User) -> Result<()> {
    let mut draft = load(session)
        .await?
        .filter(|d| d.connection_id.is_none())
        .ok_or_else(|| {
            Error::Conflict(String::from(
                "Start by filling in the connection and connecting.",
            ))
        })?;
    draft.export_user_id = Some(actor.id);
    draft.export_user_email = Some(actor.email.clone());
    store(session, &draft).await
}

/// "Save": creates the connection from the draft (name and who may use it
/// may have been edited since Connect).
pub async fn save(
    session: &dyn DraftStore,
    db: &Db,
    cipher: &Cipher,
    actor: &User,
    name: &str,
    usable_by: &str,
) -> Result<Connection> {
    let name = DisplayName::parse(name)?;
    let usable_by = UsableBy::parse(usable_by)?;
    let draft = load(session)
        .await?
        .filter(|d| d.connection_id.is_none())
        .ok_or_else(|| {
            Error::Conflict(String::from(
                "Fill in the connection and connect before saving.",
            ))
        })?;
    let Some(sealed) = &draft.tokens else {
        return Err(Error::invalid(
            "authorize",
            "Authenticate with Constant Contact before saving.",
        ));
    };
    let Some(export_user_id) = draft.export_user_id else {
        return Err(Error::invalid(
            "export_user",
            "Add yourself as export user before saving.",
        ));
    };
    let tokens = Tokens {
        access_token: cipher.decrypt(&sealed.access)?,
        refresh_token: sealed
            .refresh
            .as_ref()
            .map(|r| cipher.decrypt(r))
            .transpose()?,
        expires_at: sealed.expires_at,
        scopes: sealed.scopes.clone(),
    };
    let connection = connections::create(
        db,
        cipher,
        actor,
        NewConnection {
            display_name: name,
            usable_by,
            consent_at: draft.consent_at,
            tokens,
            export_user_id,
        },
    )
    .await?;
    discard(session).await?;
    Ok(connection)
}

/// An API client for a stored connection; refreshed tokens are stored.
pub async fn api_client(
    db: &Db,
    cipher: &Cipher,
    app: &CcApp,
    id: ConnectionId,
) -> Result<ApiClient> {
    let tokens = connections::tokens(db, cipher, id).await?;
    let keeper = connections::KeptTokens {
        db: db.clone(),
        cipher: cipher.clone(),
        id,
    };
    Ok(
        ApiClient::new(app.endpoints.clone(), tokens, Some(app.oauth()?))
            .map_err(cc_error)?
            .for_application(&app.key())
            .with_keeper(std::sync::Arc::new(keeper))
            .with_usage(std::sync::Arc::new(crate::quota::AppUsage {
                db: db.clone(),
                app: app.key(),
            })),
    )
}

/// Persists tokens a client refreshed, and records `NeedsReauthentication`.
async fn settle(
    db: &Db,
    cipher: &Cipher,
    id: ConnectionId,
    client: &ApiClient,
    before: &Tokens,
    outcome: &std::result::Result<(), CcError>,
) -> Result<()> {
    let now = client.tokens().await;
    if now.access_token != before.access_token {
        connections::store_tokens(db, cipher, None, id, &now).await?;
    }
    match outcome {
        Err(CcError::NeedsReauthentication) => {
            connections::set_status(
                db,
                id,
                Status::NeedsReauthentication,
                Some("Constant Contact no longer accepts this connection's sign-in."),
            )
            .await
        }
        Err(CcError::Forbidden(m)) => connections::set_status(db, id, Status::Error, Some(m)).await,
        Ok(()) => {
            let c = connections::get(db, id).await?;
            if c.is_some_and(|c| c.status != Status::Authorized) {
                connections::set_status(db, id, Status::Authorized, None).await?;
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// "Test connection": probes the API and counts the account's lists.
pub async fn test(
    db: &Db,
    cipher: &Cipher,
    app: &CcApp,
    id: ConnectionId,
) -> Result<std::result::Result<usize, String>> {
    let client = api_client(db, cipher, app, id).await?;
    let before = client.tokens().await;
    let lists = match client.privileges().await {
        Ok(_) => client.lists().await.map(|l| l.len()),
        Err(e) => Err(e),
    };
    let outcome = lists.as_ref().map(|_| ()).map_err(Clone::clone);
    settle(db, cipher, id, &client, &before, &outcome).await?;
    Ok(lists.map_err(|e| e.to_string()))
}

/// What removing a connection did at Constant Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
    /// `None` when the tokens were revoked; otherwise why not.
    pub revoke_problem: Option<String>,
}

/// "Remove": revokes the tokens at Constant Contact (best effort) and
/// deletes the connection and its tokens here.
pub async fn remove(
    db: &Db,
    cipher: &Cipher,
    app: Option<&CcApp>,
    actor: &User,
    id: ConnectionId,
) -> Result<Removal> {
    let (connection, tokens) = connections::remove(db, cipher, actor, id).await?;
    let revoke_problem = match (app, tokens) {
        (_, None) => Some(String::from(
            "the stored tokens could not be read, so they were not revoked",
        )),
        (None, Some(_)) => Some(String::from(
            "Constant Contact is not configured, so the tokens were not revoked",
        )),
        (Some(app), Some(tokens)) => {
            let oauth = app.oauth()?;
            let mut problems = Vec::new();
            if let Some(rt) = &tokens.refresh_token {
                if let Err(e) = oauth.revoke(rt, true).await {
                    problems.push(e.to_string());
                }
            }
            if let Err(e) = oauth.revoke(&tokens.access_token, false).await {
                problems.push(e.to_string());
            }
            (!problems.is_empty()).then(|| problems.join("; "))
        }
    };
    if let Some(p) = &revoke_problem {
        tracing::warn!(connection = %connection.display_name, problem = %p, "token revocation failed");
    }
    Ok(Removal {
        name: connection.display_name,
        revoke_problem,
    })
}
