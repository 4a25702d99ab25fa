//! The stream: every member read once, classified, and sent in batches,
//! with the checkpoint kept behind anything still on its way.

use super::batches::Sent;
use super::classify::{classify, contact_hash, email_key, Attrs, Facts, Ledger, Verdict};
use super::counts::Tally;
use super::members::{Member, Members};
use super::*;
use crate::constant_contact::batch::{BatchBuilder, ImportContact, MAX_BYTES};
use crate::exports::is_hex_of;

impl Job<'_> {
    /// Steps 3, 4 and 7: stream, map, validate, compare, batch and send.
    pub(super) async fn send_all(&mut self, suppressed: &HashSet<String>) -> Step<()> {
        let settings = self.ex.settings.clone();
        let checkpoint = self.run.checkpoint.clone().unwrap_or_default();
        let mut pending = if self.dry() {
            VecDeque::new()
        } else {
            self.open_writer();
            self.pending_batches(&checkpoint).await?
        };
        let source = self
            .export
            .email_source()
            .ok_or_else(|| Self::fail("The export maps no email field."))?
            .to_owned();
        let mapping = self.export.mapping.clone();
        let list_ids = vec![self.export.list_id.clone()];
        let mut builder = BatchBuilder::with_limits(&list_ids, settings.batch_contacts, MAX_BYTES);
        let mut in_builder: Vec<Sent> = Vec::new();
        let mut members = Members::new(
            self.ex.db.clone(),
            self.export.id,
            self.run.id,
            &self.export.segment_ids,
            settings.page_size,
        );
        let full = self.run.mode == Mode::Full;
        // Sized once: growing it would hold the old and new tables at once.
        let expected = self
            .run
            .total
            .unwrap_or(0)
            .clamp(0, settings.max_profiles as i64);
        let mut seen: HashSet<u128> = HashSet::with_capacity(expected as usize);
        let mut last_key = checkpoint.clone();
        let mut since_checkpoint = 0u64;
        while let Some(Member {
            key,
            attrs: attrs_json,
            sent: before,
            by_this_run,
        }) = members.next().await?
        {
            let attrs = Attrs::parse(&attrs_json);
            let raw_email = attrs.get(&source).map(|s| s.trim()).unwrap_or("");
            let normalized = normalize_email(raw_email);
            let settled = key <= checkpoint;
            let valid = is_valid_email(raw_email);
            let duplicate = !normalized.is_empty() && valid && !seen.insert(email_key(&normalized));
            if settled {
                continue;
            }
            // A batch an earlier attempt sent ends before this profile.
            while pending.front().is_some_and(|p| key > p.last_key) {
                if let Some(p) = pending.pop_front() {
                    self.settle_resumed(p, &last_key).await?;
                }
            }
            self.counts.read += 1;
            // The values this export sends, in mapping order (empty when
            // missing): what the ledger compares.
            let values: Vec<(&str, &str)> = mapping
                .iter()
                .map(|m| {
                    let v = if m.target == "email" {
                        raw_email
                    } else {
                        attrs.get(&m.source).map(str::trim).unwrap_or("")
                    };
                    (m.target.as_str(), v)
                })
                .collect();
            let hash = contact_hash(&values);
            let ledger = match &before {
                None => Ledger::Absent,
                Some((h, c)) if is_hex_of(h, &hash) && *c == self.config_hash => Ledger::Same,
                Some(_) => Ledger::Different,
            };
            let verdict = classify(&Facts {
                email: raw_email,
                valid,
                duplicate,
                unsubscribed: suppressed.contains(&normalized),
                ledger,
                by_this_run,
                full,
            });
            let change = match verdict {
                Verdict::Send(change) => change,
                Verdict::Skip(why) => {
                    self.counts.skip(why);
                    let (field, reason) = why.explain(&source);
                    self.skip(&key, raw_email, why.kind(), &field, reason);
                    last_key = key;
                    since_checkpoint += 1;
                    continue;
                }
                Verdict::AlreadySent(change) => {
                    self.counts.count(change);
                    last_key = key;
                    since_checkpoint += 1;
                    continue;
                }
                Verdict::Unchanged => {
                    self.counts.unchanged += 1;
                    last_key = key;
                    since_checkpoint += 1;
                    // Nothing waits to be sent: a cheap place for a checkpoint.
                    if in_builder.is_empty()
                        && pending.is_empty()
                        && self.inflight.is_empty()
                        && since_checkpoint >= settings.checkpoint_every
                    {
                        since_checkpoint = 0;
                        self.save("sending", None, Some(&last_key)).await?;
                    }
                    continue;
                }
            };
            let mut contact = ImportContact::new(raw_email);
            for (target, v) in &values {
                if *target != "email" && !v.is_empty() {
                    contact = contact.set(*target, *v);
                }
            }
            if let Err(r) = BatchBuilder::validate(&key, &contact) {
                self.counts.skipped_invalid_value += 1;
                self.skip(&key, raw_email, "invalid_value", &r.field, r.reason);
                last_key = key;
                since_checkpoint += 1;
                continue;
            }
            let sent = Sent {
                profile_id: key.as_str().into(),
                email: normalized.into_boxed_str(),
                hash,
            };
            let resent = pending.front().is_some_and(|p| key >= p.first_key);
            if resent {
                // Part of a batch an earlier attempt sent: not sent again.
                // Contacts before it (of a batch whose send was never
                // confirmed) are sent and settled first, so the checkpoint
                // never passes one of them still on its way.
                if !in_builder.is_empty() {
                    let filled = std::mem::replace(
                        &mut builder,
                        BatchBuilder::with_limits(&list_ids, settings.batch_contacts, MAX_BYTES),
                    );
                    if let Some(batch) = filled.finish() {
                        let contacts = std::mem::take(&mut in_builder);
                        self.send_batch(batch, contacts, &last_key, 1).await?;
                    }
                }
                while !self.inflight.is_empty() {
                    self.settle_oldest().await?;
                }
                if let Some(p) = pending.front_mut() {
                    p.contacts.push(sent);
                }
            } else {
                match builder.push(key.clone(), &contact) {
                    Ok(Some(batch)) => {
                        let contacts = std::mem::take(&mut in_builder);
                        self.send_batch(batch, contacts, &last_key, 1).await?;
                    }
                    Ok(None) => {}
                    Err(r) => {
                        self.counts.skipped_invalid_value += 1;
                        self.skip(&key, &sent.email, "invalid_value", &r.field, r.reason);
                        last_key = key;
                        continue;
                    }
                }
                in_builder.push(sent);
            }
            self.counts.count(change);
            last_key = key;
            since_checkpoint += 1;
        }
        while let Some(p) = pending.pop_front() {
            self.settle_resumed(p, &last_key).await?;
        }
        if let Some(batch) = builder.finish() {
            let contacts = std::mem::take(&mut in_builder);
            self.send_batch(batch, contacts, &last_key, 0).await?;
        }
        self.drained = true;
        while !self.inflight.is_empty() {
            self.settle_oldest().await?;
        }
        if !last_key.is_empty() {
            self.save("sending", None, Some(&last_key)).await?;
        }
        let closing = Instant::now();
        self.close_writer().await?;
        tracing::info!(
            run_id = %self.run.id,
            total_ms = self.started.elapsed().as_millis() as u64,
            sending_ms = self.time_sending.as_millis() as u64,
            waiting_ms = self.time_waiting.as_millis() as u64,
            writer_tail_ms = closing.elapsed().as_millis() as u64,
            batches = self.counts.batches,
            "run timings"
        );
        Ok(())
    }

    pub(super) fn skip(
        &mut self,
        profile_id: &str,
        email: &str,
        kind: &str,
        field: &str,
        reason: String,
    ) {
        self.errors.push(ContactError {
            profile_id: profile_id.to_owned(),
            email: email.to_owned(),
            kind: kind.to_owned(),
            field: field.to_owned(),
            reason,
        });
    }
}
