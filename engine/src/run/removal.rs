//! Removing contacts who left the export's segments, with the breaker that
//! stops a removal larger than the export allows.

use super::*;

impl Job<'_> {
    /// Step 5: contacts this export sent to this list who are no longer in
    /// the segments are removed from the list, behind a circuit breaker.
    pub(super) async fn remove_left(&mut self) -> Step<()> {
        let left = ledger::left(
            &self.ex.db,
            self.export.id,
            &self.export.list_id,
            &self.export.segment_ids,
        )
        .await?;
        self.counts.removals = left.len() as u64;
        if left.is_empty() {
            return Ok(());
        }
        let list_size = match self.client().list(&self.export.list_id).await {
            Ok(l) => l.membership_count.unwrap_or(0),
            Err(e) => return Err(self.cc_failed("reading the list", e).await),
        };
        let limit = self.export.removal_limit_pct as u64;
        if left.len() as u64 * 100 > list_size.max(1) * limit {
            self.partial.push(format!(
                "Removal stopped by the circuit breaker: {} contacts left the segments, more than {limit}% of the list's {list_size} members. Nothing was removed; check the segments, or raise the limit on the export.",
                left.len()
            ));
            return Ok(());
        }
        if self.dry() {
            let lookups = (left.len() as u64).min(list_size / 500 + 1);
            self.planned_calls += lookups + (left.len() as u64).div_ceil(500) * 2;
            return Ok(());
        }
        // Contact ids: looked up one by one for a few, else read from the list.
        let mut ids_by_email: HashMap<String, String> = HashMap::new();
        let wanted: HashSet<&str> = left.iter().map(|(_, e)| e.as_str()).collect();
        if (left.len() as u64) <= list_size / 500 + 1 {
            for (_, email) in &left {
                self.check()?;
                match self.client().find_contact(email).await {
                    Ok(Some(c)) if c.list_memberships.contains(&self.export.list_id) => {
                        ids_by_email.insert(email.clone(), c.contact_id);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self.cc_failed("looking up a contact to remove", e).await)
                    }
                }
            }
        } else {
            let list_id = self.export.list_id.clone();
            let result = self
                .client()
                .for_each_contact("all", Some(&list_id), |page| {
                    for c in page {
                        let email = normalize_email(&c.email_address.address);
                        if wanted.contains(email.as_str()) {
                            ids_by_email.insert(email, c.contact_id);
                        }
                    }
                })
                .await;
            if let Err(e) = result {
                return Err(self.cc_failed("reading the list's members", e).await);
            }
        }
        let list_ids = vec![self.export.list_id.clone()];
        for chunk in left.chunks(crate::constant_contact::api::MAX_REMOVE_IDS) {
            self.check()?;
            let contact_ids: Vec<String> = chunk
                .iter()
                .filter_map(|(_, e)| ids_by_email.get(e).cloned())
                .collect();
            let seq = self.next_seq;
            self.next_seq += 1;
            self.record_sending(
                seq,
                "removal",
                &chunk[0].0,
                &chunk[chunk.len() - 1].0,
                contact_ids.len(),
            )
            .await?;
            if !contact_ids.is_empty() {
                let activity = match self
                    .client()
                    .remove_list_memberships(&contact_ids, &list_ids)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        return Err(self.cc_failed("removing contacts from the list", e).await)
                    }
                };
                if let Err(e) = self
                    .client()
                    .wait_for(
                        &activity.activity_id,
                        self.ex.settings.poll_every,
                        self.ex.settings.activity_timeout,
                    )
                    .await
                {
                    return Err(self.cc_failed("waiting for a removal", e).await);
                }
            }
            // Contacts no longer on the list are forgotten either way.
            let mut conn = self.ex.db.pool().acquire().await?;
            let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
            if !self.lease.fence(&mut tx).await? {
                return Err(Stop::Lost);
            }
            ledger::forget(&mut tx, &self.ex.db, self.export.id, chunk).await?;
            let outcome = format!("{{\"removed\":{}}}", contact_ids.len());
            batches::finish(&mut tx, self.run.id, seq, true, &outcome).await?;
            tx.commit().await?;
            self.counts.removed += contact_ids.len() as u64;
            self.save("removing", None, None).await?;
        }
        Ok(())
    }
}
